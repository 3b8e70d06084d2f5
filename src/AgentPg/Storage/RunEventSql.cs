using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for the live run events (agentpg_run_events, agentpg_run_event_heads; see docs/streaming.md).</summary>
internal sealed class RunEventSql
{
    public RunEventSql(SchemaName s, LeaderSql leader)
    {
        var e = $"{s}.agentpg_run_events";
        // $1 run: the root run's id after registering the watch (back-filling on the first), or NULL for an unknown run.
        Watch = $"SELECT {s}.agentpg_watch_run($1)";
        // One page of a root run's events after a sequence, with what a watcher needs to materialize them: the run's
        // place in the hierarchy and state, and the tool execution an event is about. $1 root, $2 after, $3 limit.
        Page = $"""
            SELECT e.sequence, e.run_id, e.kind, e.ref_id, e.data::text, e.created_at,
                   r.session_id, r.depth, r.parent_run_id, r.error_message,
                   te.tool_name,
                   (CASE WHEN e.kind = 'approval_requested' THEN coalesce(te.approval_original_input, te.tool_input) ELSE te.tool_input END)::text, te.is_agent_tool, te.child_run_id, te.tool_output, te.is_error, te.error_message,
                   te.started_at, te.completed_at, te.state::text
              FROM {e} e
              LEFT JOIN {s}.agentpg_runs r ON r.id = e.run_id
              LEFT JOIN {s}.agentpg_tool_executions te ON e.kind IN ('tool_started', 'tool_completed', 'approval_requested') AND te.id = e.ref_id
             WHERE e.root_run_id = $1 AND e.sequence > $2
             ORDER BY e.sequence
             LIMIT $3
            """;
        // $1 run, $2 instance, $3 epoch, $4 iteration number, $5 kinds, $6 block indexes, $7 texts. Committed asynchronously:
        // deltas lost in a server crash are superseded by the stored message (or the iteration is repeated).
        AppendDeltas = $"""
            SELECT {s}.agentpg_append_run_deltas($1, $2, $3, $4, $5, $6, $7)
              FROM (SELECT set_config('synchronous_commit', 'off', true)) c
            """;
        // The watched root runs still active, for an instance (re)connecting its listener: it missed their announcements.
        WatchedActiveRoots = $"""
            SELECT h.root_run_id
              FROM {s}.agentpg_run_event_heads h
              JOIN {s}.agentpg_runs r ON r.id = h.root_run_id
             WHERE r.state NOT IN ('completed', 'cancelled', 'failed')
            """;
        // $1 root run: resolves a run's root (deltas of child runs are gated on their root being watched).
        RootOf = $"SELECT root_run_id FROM {s}.agentpg_runs WHERE id = $1";
        // Leader retention ($1 the leader, $2 RunEventRetention): the events of root runs that finished more than $2 ago (the
        // heads cascade to their events). Nothing when $1 does not hold the lease.
        DeleteExpired = $"""
            DELETE FROM {s}.agentpg_run_event_heads h
             USING {s}.agentpg_runs r
             WHERE r.id = h.root_run_id AND r.finalized_at < now() - $2
               AND EXISTS ({leader.LeaseHeldBy})
            """;
    }

    public string Watch { get; }

    /// <summary>A command for <see cref="AppendDeltas"/> of the run's claim by <paramref name="instanceId"/>: its scalar is
    /// whether the deltas were kept.</summary>
    public NpgsqlCommand AppendDeltasCommand(NpgsqlDataSource dataSource, Run run, string instanceId, int iterationNumber, IReadOnlyList<string> kinds,
        IReadOnlyList<int> blocks, IReadOnlyList<string> texts)
        => Db.Command(dataSource, null, AppendDeltas, P.Uuid(run.Id), P.Text(instanceId), P.Long(run.ClaimEpoch), P.Int(iterationNumber),
            P.TextArray(kinds), P.IntArray(blocks), P.TextArray(texts));

    /// <summary>A command for <see cref="WatchedActiveRoots"/>; read each row with <see cref="ReadRootRunId"/>.</summary>
    public NpgsqlCommand WatchedActiveRootsCommand(NpgsqlDataSource dataSource) => Db.Command(dataSource, null, WatchedActiveRoots);

    /// <summary>Reads a row of <see cref="WatchedActiveRoots"/>.</summary>
    public static Guid ReadRootRunId(NpgsqlDataReader r) => r.GetGuid(0);

    /// <summary>A command for <see cref="RootOf"/>: its scalar is the run's root run id (null: no such run).</summary>
    public NpgsqlCommand RootOfCommand(NpgsqlDataSource dataSource, Guid runId) => Db.Command(dataSource, null, RootOf, P.Uuid(runId));

    public string Page { get; }

    public string AppendDeltas { get; }

    public string WatchedActiveRoots { get; }

    public string RootOf { get; }

    public string DeleteExpired { get; }
}
