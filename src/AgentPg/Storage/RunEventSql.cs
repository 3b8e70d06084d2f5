using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for the live run events (agentpg_run_events, agentpg_run_event_heads; see docs/streaming.md).</summary>
internal sealed class RunEventSql
{
    public RunEventSql(SchemaName s, LeaderSql leader)
    {
        var e = $"{s}.agentpg_run_events";
        // $1 run: the root run's id after marking its row watched, or NULL for an unknown run. Committed before Watch.
        MarkWatched = $"SELECT {s}.agentpg_mark_run_watched($1)";
        // $1 run: the root run's id after registering the watch (back-filling on the first), or NULL for an unknown run.
        Watch = $"SELECT {s}.agentpg_watch_run($1)";
        // The feeds' shared fallback poll: the latest sequence of each root run in $1 (no row: no events head).
        LastSequences = $"SELECT root_run_id, last_sequence FROM {s}.agentpg_run_event_heads WHERE root_run_id = ANY ($1)";
        // $1 root run: whether its events head exists (a watched root's head disappears only with its events, deleted by
        // the leader's retention or with the run).
        HeadExists = $"SELECT EXISTS (SELECT 1 FROM {s}.agentpg_run_event_heads WHERE root_run_id = $1)";
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
        // heads cascade to their events), and whose head is that old too: a first watch of a run that finished long ago
        // back-fills its events, which a pass between the back-fill and the watcher's first read deleted (the watch saw
        // nothing, and a resume found other sequences). Nothing when $1 does not hold the lease.
        DeleteExpired = $"""
            DELETE FROM {s}.agentpg_run_event_heads h
             USING {s}.agentpg_runs r
             WHERE r.id = h.root_run_id AND r.finalized_at < now() - $2 AND h.created_at < now() - $2
               AND EXISTS ({leader.LeaseHeldBy})
            """;
    }

    public string MarkWatched { get; }

    public string LastSequences { get; }

    /// <summary>Runs <see cref="LastSequences"/>: the latest event sequence of each root run that has an events head.</summary>
    public async Task<IReadOnlyDictionary<Guid, long>> LastSequencesAsync(NpgsqlDataSource dataSource, IReadOnlyList<Guid> rootRunIds,
        CancellationToken cancellationToken)
    {
        var rows = await Db.Command(dataSource, null, LastSequences, P.UuidArray(rootRunIds))
            .QueryListAsync(static r => (Root: r.GetGuid(0), Sequence: r.GetInt64(1)), cancellationToken).ConfigureAwait(false);
        var last = new Dictionary<Guid, long>(rows.Count);
        foreach (var (root, sequence) in rows)
        {
            last[root] = sequence;
        }

        return last;
    }

    public string Watch { get; }

    public string HeadExists { get; }

    /// <summary>Runs <see cref="HeadExists"/>.</summary>
    public async Task<bool> HeadExistsAsync(NpgsqlDataSource dataSource, Guid rootRunId, CancellationToken cancellationToken)
        => await Db.Command(dataSource, null, HeadExists, P.Uuid(rootRunId)).ScalarAsync(cancellationToken).ConfigureAwait(false) is true;

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

    // Positions in Page's SELECT list.
    private const int SequenceColumn = 0, RunIdColumn = 1, KindColumn = 2, RefIdColumn = 3, DataColumn = 4, CreatedAtColumn = 5, SessionIdColumn = 6,
        DepthColumn = 7, ParentRunIdColumn = 8, RunErrorColumn = 9, ToolNameColumn = 10, ToolInputColumn = 11, IsAgentToolColumn = 12,
        ChildRunIdColumn = 13, ToolOutputColumn = 14, IsErrorColumn = 15, ToolErrorColumn = 16, ToolStartedAtColumn = 17, ToolCompletedAtColumn = 18,
        ToolStateColumn = 19;

    /// <summary>Registers a watch of the run: <see cref="MarkWatched"/> and <see cref="Watch"/>, each in a transaction of its
    /// own (one holding the run row's lock while waiting for the advisory lock could deadlock with a writer taking them in
    /// the other order). Returns the root run's id, or null for an unknown run. Both steps are idempotent.</summary>
    public async Task<Guid?> WatchAsync(NpgsqlDataSource dataSource, Guid runId, CancellationToken cancellationToken)
    {
        if (await Db.Command(dataSource, null, MarkWatched, P.Uuid(runId)).ScalarAsync(cancellationToken).ConfigureAwait(false) is not Guid)
        {
            return null;
        }

        return await Db.Command(dataSource, null, Watch, P.Uuid(runId)).ScalarAsync(cancellationToken).ConfigureAwait(false) as Guid?;
    }

    /// <summary>One page of a root run's events after <paramref name="afterSequence"/>.</summary>
    public Task<List<RunEventRow>> PageAsync(NpgsqlDataSource dataSource, Guid rootRunId, long afterSequence, int limit, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, Page, P.Uuid(rootRunId), P.Long(afterSequence), P.Int(limit)).QueryListAsync(ReadRow, cancellationToken);

    private static RunEventRow ReadRow(NpgsqlDataReader r) => new(
        r.GetInt64(SequenceColumn), r.GetGuid(RunIdColumn), r.GetString(KindColumn), r.IsDBNull(RefIdColumn) ? null : r.GetGuid(RefIdColumn),
        r.GetString(DataColumn), r.GetFieldValue<DateTimeOffset>(CreatedAtColumn), r.IsDBNull(SessionIdColumn) ? null : r.GetGuid(SessionIdColumn),
        r.IsDBNull(DepthColumn) ? 0 : r.GetInt32(DepthColumn), r.IsDBNull(ParentRunIdColumn) ? null : r.GetGuid(ParentRunIdColumn),
        r.IsDBNull(RunErrorColumn) ? null : r.GetString(RunErrorColumn), r.IsDBNull(ToolNameColumn) ? null : r.GetString(ToolNameColumn),
        r.IsDBNull(ToolInputColumn) ? null : r.GetString(ToolInputColumn), !r.IsDBNull(IsAgentToolColumn) && r.GetBoolean(IsAgentToolColumn),
        r.IsDBNull(ChildRunIdColumn) ? null : r.GetGuid(ChildRunIdColumn), r.IsDBNull(ToolOutputColumn) ? null : r.GetString(ToolOutputColumn),
        !r.IsDBNull(IsErrorColumn) && r.GetBoolean(IsErrorColumn), r.IsDBNull(ToolErrorColumn) ? null : r.GetString(ToolErrorColumn),
        r.IsDBNull(ToolStartedAtColumn) ? null : r.GetFieldValue<DateTimeOffset>(ToolStartedAtColumn),
        r.IsDBNull(ToolCompletedAtColumn) ? null : r.GetFieldValue<DateTimeOffset>(ToolCompletedAtColumn),
        r.IsDBNull(ToolStateColumn) ? null : r.GetString(ToolStateColumn));

    /// <summary>Runs <see cref="DeleteExpired"/>: how many watched root runs lost their events.</summary>
    public Task<int> DeleteExpiredAsync(NpgsqlDataSource dataSource, string leaderId, TimeSpan retention, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, DeleteExpired, P.Text(leaderId), P.Interval(retention)).ExecuteAsync(cancellationToken);
}

/// <summary>One row of <see cref="RunEventSql.Page"/>: an event with its run's place and the tool execution it is about.</summary>
internal sealed record RunEventRow(long Sequence, Guid RunId, string Kind, Guid? RefId, string Data, DateTimeOffset CreatedAt, Guid? SessionId, int Depth,
    Guid? ParentRunId, string? RunError, string? ToolName, string? ToolInput, bool IsAgentTool, Guid? ChildRunId, string? ToolOutput, bool IsError,
    string? ToolError, DateTimeOffset? ToolStartedAt, DateTimeOffset? ToolCompletedAt, string? ToolState);
