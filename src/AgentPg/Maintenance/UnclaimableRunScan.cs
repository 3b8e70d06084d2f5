using AgentPg.Diagnostics;
using AgentPg.Runs;

namespace AgentPg.Maintenance;

/// <summary>Leader job: finds pending runs that no live instance can claim (their agent lists a tool that no live instance
/// registered, or no single instance registered all of them) and logs each such condition once as a warning, with the
/// agent, the number of runs, the oldest run and the missing tools. A condition is logged again only after it cleared.</summary>
/// <remarks>Runs on the cleanup interval, one read-only query over the pending runs. "No instance at all" cannot be seen
/// from here (the leader is an instance): producers report it when they wait (<c>WaitForRunAsync</c>).</remarks>
internal sealed class UnclaimableRunScan(Engine engine) : MaintenanceService("unclaimable-run scan", engine.Options.CleanupInterval)
{
    // What was logged at the last scan: agent, run mode and the missing tools, with the agent's name. Only the leader loop
    // touches it. It survives losing and regaining leadership, so a flapping lease does not repeat warnings.
    private Dictionary<(Guid AgentId, string RunMode, string MissingTools), string> _reported = [];

    public override async Task RunAsync(CancellationToken cancellationToken)
    {
        var rows = await engine.Sql.Diagnostics.UnclaimableRunsAsync(engine.DataSource, engine.Options.InstanceTtl, cancellationToken).ConfigureAwait(false);

        var current = new Dictionary<(Guid AgentId, string RunMode, string MissingTools), string>();
        foreach (var row in rows)
        {
            var missing = string.Join(", ", row.MissingTools);
            var key = (row.AgentId, row.RunMode, missing);
            current[key] = row.AgentName;
            if (_reported.ContainsKey(key))
            {
                continue;
            }

            var problem = Unclaimable.Describe(engine.Options.Schema, row.AgentName, row.AgentTools, row.LiveInstances, row.MissingTools, false)!;
            Log.UnclaimableRuns(engine.Logger, row.Runs, row.RunMode, row.AgentName, row.AgentId, row.OldestRunId,
                missing.Length == 0 ? "none (no single instance has all of them)" : missing, problem);
        }

        foreach (var (cleared, agentName) in _reported)
        {
            if (!current.Keys.Any(k => k.AgentId == cleared.AgentId && k.RunMode == cleared.RunMode))
            {
                Log.UnclaimableRunsResolved(engine.Logger, cleared.RunMode, agentName, cleared.AgentId);
            }
        }

        _reported = current;
    }
}
