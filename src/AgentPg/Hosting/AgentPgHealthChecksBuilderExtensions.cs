using AgentPg;
using AgentPg.Hosting;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds AgentPg's health check.</summary>
public static class AgentPgHealthChecksBuilderExtensions
{
    /// <summary>Adds a health check that reports whether PostgreSQL answers, whether the AgentPg schema is at the version
    /// this package needs, and — when the process runs a worker (<see cref="AgentPgBuilderExtensions.AddWorker"/>) —
    /// whether the worker is started and its heartbeat is fresh.</summary>
    /// <param name="builder">The health checks builder (<c>services.AddHealthChecks()</c>).</param>
    /// <param name="name">The check's name.</param>
    /// <param name="failureStatus">The status reported on failure; the default is <see cref="HealthStatus.Unhealthy"/>.</param>
    /// <param name="tags">Tags to filter checks by, for example <c>["ready"]</c>.</param>
    /// <returns>The builder.</returns>
    /// <remarks>A heartbeat older than two <see cref="AgentPgOptions.HeartbeatInterval"/>s reports
    /// <see cref="HealthStatus.Degraded"/>; older than <see cref="AgentPgOptions.InstanceTtl"/>, a failure. Requires
    /// <c>services.AddAgentPg(…)</c>.</remarks>
    public static IHealthChecksBuilder AddAgentPg(this IHealthChecksBuilder builder, string name = "agentpg", HealthStatus? failureStatus = null, IEnumerable<string>? tags = null)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentException.ThrowIfNullOrEmpty(name);
        return builder.Add(new HealthCheckRegistration(name, services => new AgentPgHealthCheck(
            services.GetService<AgentPgClient>() ?? throw new InvalidOperationException("The AgentPg health check needs services.AddAgentPg(…)."),
            services.GetRequiredService<AgentPgRegistration>()), failureStatus, tags));
    }
}
