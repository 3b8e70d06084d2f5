using AgentPg.Diagnostics;
using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Maintenance;

/// <summary>Every <see cref="RunRescueOptions.Interval"/>: gives back the work of dead instances and the runs of live ones
/// that made no progress for <see cref="RunRescueOptions.Timeout"/>, and continues runs whose tools all finished but whose
/// results were never written.</summary>
internal sealed class RunRescuer(Engine engine) : MaintenanceService("run rescue", engine.Options.RunRescue.Interval)
{
    public override async Task RunAsync(CancellationToken cancellationToken)
    {
        var rescue = engine.Options.RunRescue;
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            engine.Sql.Rescue.AddRescue(batch, engine.InstanceId, engine.Options.InstanceTtl, rescue.Timeout, rescue.MaxAttempts);
            foreach (var result in await engine.QueryListAsync(batch, RescueSql.ReadRescue, cancellationToken).ConfigureAwait(false))
            {
                Telemetry.RunsFailed(result.FailedRunModes);
                if (result.Released > 0 || result.Continued > 0)
                {
                    Log.Rescued(engine.Logger, result.Released, result.Continued, string.Join(", ", result.DeadInstances));
                    engine.WakeAllWorkers();
                }
            }
        }
    }
}
