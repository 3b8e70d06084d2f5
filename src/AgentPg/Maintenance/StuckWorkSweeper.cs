using AgentPg.Diagnostics;
using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Maintenance;

/// <summary>Leader job, every <see cref="RunRescueOptions.Interval"/>: releases runs and tool executions claimed by a live
/// instance that this instance does not report as in flight (review D1, last line of defence).</summary>
/// <remarks>
/// Workers end every execution they claim (see <see cref="Workers.ToolRunner"/>), but when even the write that says why
/// fails (the database stays away longer than the retry budget) the claim stays behind on a live instance, where neither
/// dead-instance rescue nor the no-progress rescue of streams looks. Each heartbeat records the ids the instance's workers
/// hold (<see cref="HeldWork"/>); agentpg_release_unheld_work releases claims older than that report by more than
/// <see cref="AgentPgOptions.InstanceTtl"/> that it does not list. The report is dated no later than the moment its ids
/// were read (by the previous heartbeat, and not past a claim in flight then), never by its own write: a process that
/// stalls between the two (a starved thread pool, a wait for a pooled connection) claims meanwhile, and a later date would
/// make the leader release work the instance is doing, which its worker then does twice (a second model call, a tool run
/// again). The check is one statement over the claimed rows and the instance rows, so it is cheap enough to run with
/// rescue.
/// </remarks>
internal sealed class StuckWorkSweeper(Engine engine) : MaintenanceService("stuck-work sweep", engine.Options.RunRescue.Interval)
{
    public override async Task RunAsync(CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            engine.Sql.Rescue.AddReleaseUnheldWork(batch, engine.InstanceId, engine.Options.InstanceTtl, engine.Options.RunRescue.MaxAttempts);
            foreach (var (released, failedRunModes) in await engine.QueryListAsync(batch, RescueSql.ReadReleaseUnheldWork, cancellationToken).ConfigureAwait(false))
            {
                Telemetry.RunsFailed(failedRunModes);
                if (released > 0)
                {
                    Log.UnheldWorkReleased(engine.Logger, released);
                    engine.WakeAllWorkers();
                }
            }
        }
    }
}
