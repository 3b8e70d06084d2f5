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
        // $1 execution: what the decision needs to validate an edited input; the tool's schema as the instances registered it.
        ForDecision = $"""
            SELECT te.state::text, te.tool_name, te.is_agent_tool, t.input_schema::text
              FROM {t} te LEFT JOIN {s}.agentpg_tools t ON t.name = te.tool_name AND NOT te.is_agent_tool
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

    public string Decide { get; }

    public string Expire { get; }

    /// <summary>A command for <see cref="OfIteration"/>; read each row with <see cref="Read"/>.</summary>
    public NpgsqlCommand OfIterationCommand(NpgsqlDataSource dataSource, Guid iterationId) => Db.Command(dataSource, null, OfIteration, P.Uuid(iterationId));

    public static ToolApprovalRequest Read(NpgsqlDataReader r) => new()
    {
        ToolExecutionId = r.GetGuid(0),
        RunId = r.GetGuid(1),
        RootRunId = r.GetGuid(2),
        SessionId = r.GetGuid(3),
        AgentId = r.GetGuid(4),
        ToolName = r.GetString(5),
        Input = ToolExecutionSql.ParseJson(r.GetString(6)),
        Depth = r.GetInt32(7),
        RequestedAt = r.GetFieldValue<DateTimeOffset>(8),
    };
}
