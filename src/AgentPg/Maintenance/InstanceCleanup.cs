using AgentPg.Diagnostics;
using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Maintenance;

/// <summary>Every <see cref="AgentPgOptions.CleanupInterval"/>: releases the work of instances that stopped heartbeating
/// for <see cref="AgentPgOptions.InstanceTtl"/> (counted as a rescue) and deletes them.</summary>
internal sealed class InstanceCleanup(Engine engine) : MaintenanceService("instance cleanup", engine.Options.CleanupInterval)
{
    public override async Task RunAsync(CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            engine.Sql.InstanceCleanup.AddDeleteStale(batch, engine.InstanceId, engine.Options.InstanceTtl, engine.Options.RunRescue.MaxAttempts);
            foreach (var (instance, failedRunModes) in await engine.QueryListAsync(batch, InstanceCleanupSql.ReadDeleted, cancellationToken).ConfigureAwait(false))
            {
                Log.StaleInstanceRemoved(engine.Logger, instance);
                Telemetry.RunsFailed(failedRunModes);
            }
        }
    }
}
