using AgentPg.AspNetCore.Admin;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers what the AgentPg admin UI needs.</summary>
public static class AgentPgAdminServiceCollectionExtensions
{
    /// <summary>Registers the services of the admin UI (antiforgery for its forms). Call it next to <c>AddAgentPg</c>, then
    /// mount the pages with <c>app.MapAgentPgAdmin()</c>.</summary>
    /// <param name="services">The service collection.</param>
    /// <returns>The same service collection.</returns>
    public static IServiceCollection AddAgentPgAdmin(this IServiceCollection services)
    {
        ArgumentNullException.ThrowIfNull(services);
        services.AddAntiforgery();
        services.AddSingleton<AdminServicesMarker>();
        return services;
    }
}
