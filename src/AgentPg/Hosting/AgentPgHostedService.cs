using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace AgentPg.Hosting;

/// <summary>Creates the client when the host starts (so a missing data source fails the start), applies migrations when
/// <see cref="AgentPgOptions.MigrateOnStart"/> is set, creates the registered agents and — for a worker — starts the client
/// after them and stops it within the host's shutdown timeout.</summary>
internal sealed class AgentPgHostedService(IServiceProvider services, AgentPgRegistration registration) : IHostedService
{
    private AgentPgClient? _started;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var client = services.GetRequiredService<AgentPgClient>();
        if (client.Options.MigrateOnStart && (registration.Agents.Count > 0 || registration.RunWorker))
        {
            // The agents are written before the client starts, so the schema must exist before them.
            await new AgentPgMigrator(client.DataSource, client.Options.Schema).MigrateAsync(null, cancellationToken).ConfigureAwait(false);
        }

        foreach (var agent in registration.Agents)
        {
            await client.GetOrCreateAgentAsync(agent, cancellationToken).ConfigureAwait(false);
        }

        if (registration.RunWorker)
        {
            await client.StartAsync(cancellationToken).ConfigureAwait(false);
            _started = client;
        }
    }

    /// <remarks>The host cancels <paramref name="cancellationToken"/> when its shutdown timeout passes: in-flight work gets
    /// until then to finish and is released to other instances afterwards.</remarks>
    public Task StopAsync(CancellationToken cancellationToken)
        => _started is { } client ? client.StopAsync(cancellationToken) : Task.CompletedTask;
}
