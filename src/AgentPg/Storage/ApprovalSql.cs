using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for approvals: tool executions in awaiting_approval (see agentpg_decide_tool_approval).</summary>
internal sealed class ApprovalSql
{
    public const string RequestColumns =
        "te.id, te.run_id, root.id, r.session_id, r.agent_id, te.tool_name, te.tool_input::text, r.depth, te.created_at";

    public ApprovalSql(SchemaName s, LeaderSql leader)
    {
        var t = $"{s}.agentpg_tool_executions";
        // The root of run r: at most MaxAgentDepth steps up the parent chain.
        var root = $"""
            LATERAL (WITH RECURSIVE up AS (
                         SELECT u.id, u.parent_run_id FROM {s}.agentpg_runs u WHERE u.id = r.id
                         UNION ALL
                         SELECT p.id, p.parent_run_id FROM {s}.agentpg_runs p JOIN up ON p.id = up.parent_run_id)
                     SELECT up.id FROM up WHERE up.parent_run_id IS NULL) root
            """;
        // $1 session (null = any), $2 session metadata containment, $3 limit. Oldest first.
        Pending = $"""
            SELECT {RequestColumns}
              FROM {t} te
              JOIN {s}.agentpg_runs r ON r.id = te.run_id
              JOIN {s}.agentpg_sessions se ON se.id = r.session_id,
                   {root}
             WHERE te.state = 'awaiting_approval'
               AND ($1::uuid IS NULL OR r.session_id = $1)
               AND se.metadata @> $2
             ORDER BY te.created_at, te.position
             LIMIT $3
            """;
        // The requests of one iteration just recorded ($1), for OnApprovalRequested.
        OfIteration = $"""
            SELECT {RequestColumns}
              FROM {t} te
              JOIN {s}.agentpg_runs r ON r.id = te.run_id,
                   {root}
             WHERE te.iteration_id = $1 AND te.state = 'awaiting_approval'
             ORDER BY te.position
            """;
        // $1 execution: what the decision needs to validate an edited input; the tool's schema as the instances registered it
        // (none for a delegation or Claude's memory tool, whose name an instance tool may also have).
        ForDecision = $"""
            SELECT te.state::text, te.tool_name, te.is_agent_tool, t.input_schema::text, te.is_memory_tool
              FROM {t} te LEFT JOIN {s}.agentpg_tools t ON t.name = te.tool_name AND NOT te.is_agent_tool AND NOT te.is_memory_tool
             WHERE te.id = $1
            """;
        // $1 execution: why a decision found it not waiting, for the error message.
        Decided = $"""
            SELECT te.state::text, te.tool_name, te.approval_required, te.approval_decision, te.approval_decided_by, te.approval_decided_at,
                   te.approval_comment
              FROM {t} te
             WHERE te.id = $1
            """;
        // $1 execution, $2 approve, $3 edited input (null = Claude's), $4 comment or reason, $5 decided by.
        Decide = $"SELECT {s}.agentpg_decide_tool_approval($1, $2, $3, $4, $5)";
        // Leader only: $1 leader id, $2 timeout, $3 most requests per pass.
        Expire = $"""
            SELECT e.expired
              FROM ({leader.LeaseHeldBy}) leader, LATERAL {s}.agentpg_expire_tool_approvals($2, $3) AS e(expired)
            """;
    }

    public string Pending { get; }

    public string OfIteration { get; }

    public string ForDecision { get; }

    public string Decided { get; }

    public string Decide { get; }

    public string Expire { get; }

    /// <summary>A command for <see cref="OfIteration"/>; read each row with <see cref="Read"/>.</summary>
    public NpgsqlCommand OfIterationCommand(NpgsqlDataSource dataSource, Guid iterationId) => Db.Command(dataSource, null, OfIteration, P.Uuid(iterationId));

    // Positions in ForDecision's SELECT list.
    private const int DecisionStateColumn = 0, DecisionToolNameColumn = 1, DecisionIsAgentToolColumn = 2, DecisionSchemaColumn = 3, DecisionIsMemoryToolColumn = 4;

    // Positions in RequestColumns.
    private const int IdColumn = 0, RunIdColumn = 1, RootRunIdColumn = 2, SessionIdColumn = 3, AgentIdColumn = 4, ToolNameColumn = 5, InputColumn = 6,
        DepthColumn = 7, CreatedAtColumn = 8;

    /// <summary>The oldest pending requests, of one session (or any) whose metadata contains <paramref name="filterJson"/>.</summary>
    public Task<List<ToolApprovalRequest>> PendingAsync(NpgsqlDataSource dataSource, Guid? sessionId, string filterJson, int limit,
        CancellationToken cancellationToken)
        => Db.Command(dataSource, null, Pending, P.Uuid(sessionId), P.Jsonb(filterJson), P.Int(limit)).QueryListAsync(Read, cancellationToken);

    /// <summary>What a decision on execution <paramref name="toolExecutionId"/> needs to validate an edited input, or null when
    /// it does not exist.</summary>
    public Task<ApprovalTarget?> ForDecisionAsync(NpgsqlDataSource dataSource, NpgsqlTransaction? transaction, Guid toolExecutionId,
        CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, ForDecision, P.Uuid(toolExecutionId)).QueryFirstOrDefaultAsync(
            r => new ApprovalTarget(r.GetString(DecisionStateColumn), r.GetString(DecisionToolNameColumn), r.GetBoolean(DecisionIsAgentToolColumn),
                r.IsDBNull(DecisionSchemaColumn) ? null : r.GetString(DecisionSchemaColumn), r.GetBoolean(DecisionIsMemoryToolColumn)),
            cancellationToken);

    /// <summary>Why execution <paramref name="toolExecutionId"/> is not waiting for a decision (<see cref="Decided"/>), or null when it
    /// does not exist.</summary>
    public Task<ApprovalState?> DecidedAsync(NpgsqlDataSource dataSource, NpgsqlTransaction? transaction, Guid toolExecutionId,
        CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, Decided, P.Uuid(toolExecutionId)).QueryFirstOrDefaultAsync(
            r => new ApprovalState(r.GetString(0), r.GetString(1), r.GetBoolean(2), r.IsDBNull(3) ? null : r.GetString(3), r.IsDBNull(4) ? null : r.GetString(4),
                r.IsDBNull(5) ? null : r.GetFieldValue<DateTimeOffset>(5), r.IsDBNull(6) ? null : r.GetString(6)),
            cancellationToken);

    /// <summary>Runs <see cref="Decide"/>: "not_found", "not_pending" or the decision taken.</summary>
    public async Task<string> DecideAsync(NpgsqlDataSource dataSource, NpgsqlTransaction? transaction, Guid toolExecutionId, bool approve,
        string? inputJson, string? comment, string? decidedBy, CancellationToken cancellationToken)
        => (string)(await Db.Command(dataSource, transaction, Decide, P.Uuid(toolExecutionId), P.Bool(approve), P.Jsonb(inputJson), P.Text(comment),
            P.Text(decidedBy)).ScalarAsync(cancellationToken).ConfigureAwait(false))!;

    /// <summary>Runs <see cref="Expire"/>: how many requests it rejected (0 when the leader lost the lease).</summary>
    public async Task<int> ExpireAsync(NpgsqlDataSource dataSource, string leaderId, TimeSpan timeout, int limit, CancellationToken cancellationToken)
        => await Db.Command(dataSource, null, Expire, P.Text(leaderId), P.Interval(timeout), P.Int(limit)).ScalarAsync(cancellationToken)
            .ConfigureAwait(false) as int? ?? 0;

    public static ToolApprovalRequest Read(NpgsqlDataReader r) => new()
    {
        ToolExecutionId = r.GetGuid(IdColumn),
        RunId = r.GetGuid(RunIdColumn),
        RootRunId = r.GetGuid(RootRunIdColumn),
        SessionId = r.GetGuid(SessionIdColumn),
        AgentId = r.GetGuid(AgentIdColumn),
        ToolName = r.GetString(ToolNameColumn),
        Input = ToolExecutionSql.ParseJson(r.GetString(InputColumn)),
        Depth = r.GetInt32(DepthColumn),
        RequestedAt = r.GetFieldValue<DateTimeOffset>(CreatedAtColumn),
    };
}

/// <summary>A tool execution about to be decided: its state, its tool, and the tool's schema as the instances registered it.</summary>
internal sealed record ApprovalTarget(string State, string ToolName, bool IsAgentTool, string? StoredSchema, bool IsMemoryTool);

/// <summary>A tool execution's state and decision, read when a decision found it not waiting.</summary>
internal sealed record ApprovalState(string State, string ToolName, bool Required, string? Decision, string? DecidedBy, DateTimeOffset? DecidedAt,
    string? Comment);
