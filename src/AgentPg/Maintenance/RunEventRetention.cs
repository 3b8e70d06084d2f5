using AgentPg.Diagnostics;
using AgentPg.Runs;

namespace AgentPg.Maintenance;

/// <summary>Every <see cref="AgentPgOptions.CleanupInterval"/>: deletes the live events (<see cref="AgentPgClient.WatchRunAsync"/>) of
/// root runs that finished more than <see cref="AgentPgOptions.RunEventRetention"/> ago.</summary>
internal sealed class RunEventRetention(Engine engine) : MaintenanceService("run event retention", engine.Options.CleanupInterval)
{
    public override async Task RunAsync(CancellationToken cancellationToken)
    {
        var count = await engine.Sql.RunEvents.DeleteExpiredAsync(engine.DataSource, engine.InstanceId, engine.Options.RunEventRetention, cancellationToken)
            .ConfigureAwait(false);
        if (count > 0)
        {
            Log.RunEventsExpired(engine.Logger, count);
        }
    }
}
