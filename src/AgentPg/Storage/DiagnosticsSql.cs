using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL that explains why pending runs are not claimed (read-only; over agentpg_runs, agentpg_agents,
/// agentpg_instances and agentpg_instance_tools).</summary>
internal sealed class DiagnosticsSql
{
    public DiagnosticsSql(SchemaName s)
    {
        // Live instances and their tools. "Live" is what the leader's cleanup keeps: a heartbeat within InstanceTtl.
        string Live(string ttl) => $"""
            live AS (
                SELECT i.id, ARRAY(SELECT it.tool_name FROM {s}.agentpg_instance_tools it WHERE it.instance_id = i.id) AS tools
                  FROM {s}.agentpg_instances i
                 WHERE i.last_heartbeat_at > now() - {ttl}
            )
            """;
        // The agent's tools that no live instance registered, in name order.
        var missing = "ARRAY(SELECT t FROM unnest(a.tool_names) t WHERE NOT EXISTS (SELECT 1 FROM live l WHERE t = ANY (l.tools)) ORDER BY t)";
        // agentpg_claim_runs takes a run only on an instance that registered every tool of its agent.
        var claimable = "EXISTS (SELECT 1 FROM live l WHERE a.tool_names IS NULL OR a.tool_names <@ l.tools)";

        // $1 run id, $2 instance ttl. One row, or none when the run does not exist.
        Run = $"""
            WITH {Live("$2")}
            SELECT r.id, r.state::text, r.run_mode::text, r.agent_id, a.name, a.tool_names,
                   (SELECT count(*) FROM live)::int, {missing}, {claimable},
                   CASE WHEN r.state = 'pending' AND r.parent_run_id IS NULL THEN
                       (SELECT o.run_id FROM {s}.agentpg_run_queue o
                         WHERE o.session_id = r.session_id AND o.is_root AND o.seq < r.seq
                         ORDER BY o.seq LIMIT 1)
                   END,
                   r.claimed_by_instance_id
              FROM {s}.agentpg_runs r
              JOIN {s}.agentpg_agents a ON a.id = r.agent_id
             WHERE r.id = $1
            """;

        // Run by the leader. $1 instance ttl. One row per agent and run mode whose
        // pending runs no live instance can claim: agent id and name, run mode, how many runs, the oldest one, the tools
        // nobody registered, live instances, the agent's tools. One pass over the pending runs
        // (agentpg_idx_run_queue_claim, each joined to its run row), grouped before the per-agent checks. Unlike the leader's writing jobs it does
        // not check the lease: it only reads, and a missing row must mean "no condition", never "lease just expired".
        UnclaimableRuns = $"""
            WITH {Live("$1")}, waiting AS (
                SELECT r.agent_id, r.run_mode, count(*) AS runs, (array_agg(r.id ORDER BY r.seq))[1] AS oldest_run_id
                  FROM {s}.agentpg_run_queue q JOIN {s}.agentpg_runs r ON r.id = q.run_id
                 WHERE q.state = 'pending' AND r.state = 'pending'
                 GROUP BY r.agent_id, r.run_mode
            )
            SELECT w.agent_id, a.name, w.run_mode::text, w.runs::int, w.oldest_run_id, {missing}, (SELECT count(*) FROM live)::int, a.tool_names
              FROM waiting w
              JOIN {s}.agentpg_agents a ON a.id = w.agent_id
             WHERE NOT {claimable}
             ORDER BY a.name, w.run_mode
            """;
    }

    public string Run { get; }

    public string UnclaimableRuns { get; }

    // Positions in Run's SELECT list.
    private const int RunIdColumn = 0, StateColumn = 1, RunModeColumn = 2, AgentIdColumn = 3, AgentNameColumn = 4, AgentToolsColumn = 5,
        LiveColumn = 6, MissingColumn = 7, EligibleColumn = 8, WaitingForColumn = 9, ClaimedByColumn = 10;

    // Positions in UnclaimableRuns' SELECT list.
    private const int UAgentIdColumn = 0, UAgentNameColumn = 1, URunModeColumn = 2, URunsColumn = 3, UOldestColumn = 4, UMissingColumn = 5,
        ULiveColumn = 6, UAgentToolsColumn = 7;

    /// <summary>The run's diagnosis without <see cref="RunDiagnostics.Problem"/> (the caller describes it), or null when the run
    /// does not exist.</summary>
    public Task<RunDiagnostics?> RunAsync(NpgsqlDataSource dataSource, Guid runId, TimeSpan instanceTtl, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, Run, P.Uuid(runId), P.Interval(instanceTtl)).QueryFirstOrDefaultAsync(ReadRun, cancellationToken);

    /// <summary>The agents and run modes whose pending runs no live instance can claim.</summary>
    public Task<List<UnclaimableRuns>> UnclaimableRunsAsync(NpgsqlDataSource dataSource, TimeSpan instanceTtl, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, UnclaimableRuns, P.Interval(instanceTtl)).QueryListAsync(ReadUnclaimable, cancellationToken);

    private static RunDiagnostics ReadRun(NpgsqlDataReader r) => new()
    {
        RunId = r.GetGuid(RunIdColumn),
        State = DbEnums.ParseRunState(r.GetString(StateColumn)),
        RunMode = DbEnums.ParseRunMode(r.GetString(RunModeColumn)),
        AgentId = r.GetGuid(AgentIdColumn),
        AgentName = r.GetString(AgentNameColumn),
        AgentTools = r.IsDBNull(AgentToolsColumn) ? null : r.GetFieldValue<string[]>(AgentToolsColumn),
        LiveInstanceCount = r.GetInt32(LiveColumn),
        MissingTools = r.GetFieldValue<string[]>(MissingColumn),
        HasEligibleInstance = r.GetBoolean(EligibleColumn),
        WaitingForRunId = r.IsDBNull(WaitingForColumn) ? null : r.GetGuid(WaitingForColumn),
        ClaimedByInstanceId = r.IsDBNull(ClaimedByColumn) ? null : r.GetString(ClaimedByColumn),
    };

    private static UnclaimableRuns ReadUnclaimable(NpgsqlDataReader r) => new(
        r.GetGuid(UAgentIdColumn), r.GetString(UAgentNameColumn), r.GetString(URunModeColumn), r.GetInt32(URunsColumn), r.GetGuid(UOldestColumn),
        r.GetFieldValue<string[]>(UMissingColumn), r.GetInt32(ULiveColumn), r.IsDBNull(UAgentToolsColumn) ? null : r.GetFieldValue<string[]>(UAgentToolsColumn));
}

/// <summary>One row of <see cref="DiagnosticsSql.UnclaimableRuns"/>: pending runs of one agent and run mode that no live instance
/// can claim.</summary>
internal sealed record UnclaimableRuns(Guid AgentId, string AgentName, string RunMode, int Runs, Guid OldestRunId, string[] MissingTools,
    int LiveInstances, string[]? AgentTools);
