using AgentPg;
using AgentPg.AspNetCore;
using AgentPg.AspNetCore.Admin;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace Microsoft.AspNetCore.Builder;

/// <summary>Mounts the AgentPg admin UI.</summary>
public static class AgentPgAdminEndpointRouteBuilderExtensions
{
    /// <summary>Mounts the admin UI under <paramref name="prefix"/>: dashboard, runs, sessions, tool executions, agents,
    /// instances, compactions, approvals and chat, with live updates.</summary>
    /// <param name="endpoints">The application's endpoints.</param>
    /// <param name="prefix">The path the UI lives under (default <c>/agentpg</c>); links also honour the request's
    /// <c>PathBase</c>, so it works behind a reverse proxy that strips a prefix.</param>
    /// <param name="configure">Sets <see cref="AgentPgAdminOptions"/>.</param>
    /// <returns>The endpoints' convention builder: protect them with <c>.RequireAuthorization(…)</c>. Deny by default:
    /// without an authorization requirement (or <see cref="AgentPgAdminOptions.AllowAnonymous"/>) every request is refused.</returns>
    /// <exception cref="InvalidOperationException"><c>AddAgentPgAdmin</c> or <c>AddAgentPg</c> was not called on the services.</exception>
    /// <exception cref="ArgumentException">An option is invalid, or the prefix does not start with '/'.</exception>
    public static IEndpointConventionBuilder MapAgentPgAdmin(this IEndpointRouteBuilder endpoints, string prefix = "/agentpg",
        Action<AgentPgAdminOptions>? configure = null)
    {
        ArgumentNullException.ThrowIfNull(endpoints);
        ArgumentNullException.ThrowIfNull(prefix);
        if (!prefix.StartsWith('/'))
        {
            throw new ArgumentException($"The admin UI prefix must start with '/' (was '{prefix}').", nameof(prefix));
        }

        var options = new AgentPgAdminOptions();
        configure?.Invoke(options);
        options.Validate();
        if (endpoints.ServiceProvider.GetService<AdminServicesMarker>() is null)
        {
            throw new InvalidOperationException(
                "The AgentPg admin UI needs its services: call builder.Services.AddAgentPgAdmin() before building the app.");
        }

        if (endpoints.ServiceProvider.GetService<AgentPgClient>() is null)
        {
            throw new InvalidOperationException(
                "The AgentPg admin UI reads through the AgentPgClient registered in the container: call builder.Services.AddAgentPg(…) first.");
        }

        var group = endpoints.MapGroup(prefix.TrimEnd('/'));
        group.AddEndpointFilter(new AdminGate(options));
        group.WithMetadata(new ExcludeFromDescriptionAttribute());
        AdminEndpoints.Map(group, options, prefix.TrimEnd('/'));
        return group;
    }
}
