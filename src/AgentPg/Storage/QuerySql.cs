using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>The read side for dashboards, the admin UI and the CLI: filtered, keyset-paginated lists and aggregate counts.
/// Every statement takes the tenant filter (JSON containment on the session's metadata) and applies it in SQL, so another
/// tenant's rows never reach a list, a count or a chart.</summary>
/// <remarks>Each filter is written as <c>($n IS NULL OR …)</c>. These statements are not prepared, so PostgreSQL plans
/// them with the values of each call and folds away the filters that are not set.</remarks>
internal sealed class QuerySql
{
    public QuerySql(SchemaName s)
    {
        var runs = $"{s}.agentpg_runs";
        var sessions = $"{s}.agentpg_sessions";
        var tools = $"{s}.agentpg_tool_executions";

        // $1 ids, $2 states, $3 agent, $4 session, $5 mode, $6 created from, $7 created before, $8 root only, $9 tenant,
        // $10/$11 cursor (created_at, id), $12 limit. The duplicated created_at bound lets the created_at index serve the
        // keyset; the row comparison breaks ties on id.
        Runs = Filtered.Split($"""
            SELECT {RunSql.Prefixed("r")}
              FROM {runs} r
             WHERE ($1::uuid[] IS NULL OR r.id = ANY($1))
               AND ($2::{s}.agentpg_run_state[] IS NULL OR r.state = ANY($2))
               AND ($3::uuid IS NULL OR r.agent_id = $3)
               AND ($4::uuid IS NULL OR r.session_id = $4)
               AND ($5::text IS NULL OR r.run_mode::text = $5)
               AND ($6::timestamptz IS NULL OR r.created_at >= $6)
               AND ($7::timestamptz IS NULL OR r.created_at < $7)
               AND (NOT $8 OR r.parent_run_id IS NULL)
               AND ($9::jsonb IS NULL OR EXISTS (SELECT 1 FROM {sessions} s WHERE s.id = r.session_id AND s.metadata @> $9))
               AND ($10::timestamptz IS NULL OR (r.created_at <= $10 AND (r.created_at, r.id) < ($10, $11)))
             ORDER BY r.created_at DESC, r.id DESC
             LIMIT $12
            """);

        // $1 ids, $2 tenant, $3 root only, $4 created from, $5/$6 cursor, $7 limit, $8 created before.
        Sessions = $"""
            SELECT s.id, s.parent_session_id, s.depth, s.metadata::text, s.compaction_count, s.created_at, s.updated_at
              FROM {sessions} s
             WHERE ($1::uuid[] IS NULL OR s.id = ANY($1))
               AND ($2::jsonb IS NULL OR s.metadata @> $2)
               AND (NOT $3 OR s.parent_session_id IS NULL)
               AND ($4::timestamptz IS NULL OR s.created_at >= $4)
               AND ($8::timestamptz IS NULL OR s.created_at < $8)
               AND ($5::timestamptz IS NULL OR (s.created_at <= $5 AND (s.created_at, s.id) < ($5, $6)))
             ORDER BY s.created_at DESC, s.id DESC
             LIMIT $7
            """;

        // $1 ids, $2 run, $3 tool name, $4 states, $5 is agent tool, $6 tenant, $7/$8 cursor, $9 limit, $10 created from,
        // $11 created before.
        ToolExecutions = Filtered.Split($"""
            SELECT {ToolExecutionSql.Columns}
              FROM {tools} te
             WHERE ($1::uuid[] IS NULL OR te.id = ANY($1))
               AND ($2::uuid IS NULL OR te.run_id = $2)
               AND ($3::text IS NULL OR te.tool_name = $3)
               AND ($4::{s}.agentpg_tool_execution_state[] IS NULL OR te.state = ANY($4))
               AND ($5::boolean IS NULL OR te.is_agent_tool = $5)
               AND ($6::jsonb IS NULL OR EXISTS (
                    SELECT 1 FROM {runs} r JOIN {sessions} s ON s.id = r.session_id
                     WHERE r.id = te.run_id AND s.metadata @> $6))
               AND ($10::timestamptz IS NULL OR te.created_at >= $10)
               AND ($11::timestamptz IS NULL OR te.created_at < $11)
               AND ($7::timestamptz IS NULL OR (te.created_at <= $7 AND (te.created_at, te.id) < ($7, $8)))
             ORDER BY te.created_at DESC, te.id DESC
             LIMIT $9
            """);

        // $1 session, $2 tenant, $3 created from, $4/$5 cursor, $6 limit.
        CompactionEvents = Filtered.Split($"""
            SELECT {CompactionSql.EventColumns}
              FROM {s}.agentpg_compaction_events e
             WHERE ($1::uuid IS NULL OR e.session_id = $1)
               AND ($2::jsonb IS NULL OR EXISTS (SELECT 1 FROM {sessions} s WHERE s.id = e.session_id AND s.metadata @> $2))
               AND ($3::timestamptz IS NULL OR e.created_at >= $3)
               AND ($4::timestamptz IS NULL OR (e.created_at <= $4 AND (e.created_at, e.id) < ($4, $5)))
             ORDER BY e.created_at DESC, e.id DESC
             LIMIT $6
            """);

        // Instances with their heartbeat age by the database clock, leadership, tools and in-flight work.
        Instances = $"""
            SELECT i.id, i.name, i.hostname, i.pid, i.version, i.max_concurrent_runs, i.max_concurrent_tools, i.created_at,
                   i.last_heartbeat_at, now() - i.last_heartbeat_at,
                   EXISTS (SELECT 1 FROM {s}.agentpg_leader l WHERE l.leader_id = i.id AND l.expires_at > now()),
                   coalesce((SELECT array_agg(it.tool_name ORDER BY it.tool_name) FROM {s}.agentpg_instance_tools it
                              WHERE it.instance_id = i.id), ARRAY[]::text[]),
                   (SELECT count(*) FROM {runs} r
                     WHERE r.claimed_by_instance_id = i.id AND r.state NOT IN ('completed', 'cancelled', 'failed'))::int,
                   (SELECT count(*) FROM {tools} te WHERE te.claimed_by_instance_id = i.id AND te.state = 'running')::int
              FROM {s}.agentpg_instances i
             ORDER BY i.created_at, i.id
            """;

        // $1 window start offset (interval), $2 bucket (interval), $3 tenant. One statement per result; see Read* below.
        var tenant = $"($3::jsonb IS NULL OR EXISTS (SELECT 1 FROM {sessions} s WHERE s.id = r.session_id AND s.metadata @> $3))";
        // The window by the database clock.
        StatisticsWindow = "SELECT now() - $1::interval, now(), $2::interval, $3::jsonb";
        // Non-terminal runs are few: agentpg_idx_runs_active (run_mode, state) holds exactly them (an index-only scan).
        StatisticsQueue = Filtered.Split($"""
            SELECT r.run_mode::text, r.state::text, count(*)::int
              FROM {runs} r
             WHERE r.state NOT IN ('completed', 'cancelled', 'failed') AND {tenant}
             GROUP BY r.run_mode, r.state
            """);
        // Runs created in the window, per bucket of their creation and state, with their tokens: one range scan of the
        // created_at index serves the counts by state and the charts. Buckets are aligned on 2000-01-01 UTC.
        StatisticsBuckets = Filtered.Split($"""
            SELECT date_bin($2::interval, r.created_at, TIMESTAMPTZ '2000-01-01 00:00:00+00'), r.state::text, count(*)::int,
                   sum(r.input_tokens)::bigint, sum(r.output_tokens)::bigint,
                   sum(r.cache_creation_input_tokens)::bigint, sum(r.cache_read_input_tokens)::bigint
              FROM {runs} r
             WHERE r.created_at >= now() - $1::interval AND {tenant}
             GROUP BY 1, 2
            """);
    }

    public Filtered Runs { get; }

    public string Sessions { get; }

    public Filtered ToolExecutions { get; }

    public Filtered CompactionEvents { get; }

    public string Instances { get; }

    public string StatisticsWindow { get; }

    public Filtered StatisticsQueue { get; }

    public Filtered StatisticsBuckets { get; }

    /// <summary>A statement in two versions: for every tenant, and for one (the tenant condition as a plain <c>EXISTS</c>, so
    /// PostgreSQL turns it into a semi-join; wrapped in <c>$n IS NULL OR …</c> it could only run it as a filter per row, and
    /// estimated so high that a dashboard query paid ~1 s of JIT compilation).</summary>
    public sealed class Filtered
    {
        private Filtered(string everyone, string oneTenant) => (Everyone, OneTenant) = (everyone, oneTenant);

        public string Everyone { get; }

        public string OneTenant { get; }

        public string For(string? tenant) => tenant is null ? Everyone : OneTenant;

        /// <summary>Splits a statement whose tenant condition is written <c>($n::jsonb IS NULL OR EXISTS (…))</c>.</summary>
        public static Filtered Split(string sql)
        {
            var start = sql.IndexOf("::jsonb IS NULL OR EXISTS", StringComparison.Ordinal);
            start = sql.LastIndexOf('(', start);
            var exists = sql.IndexOf("EXISTS", start, StringComparison.Ordinal);
            var depth = 0;
            var end = start;
            for (; end < sql.Length; end++)
            {
                depth += sql[end] == '(' ? 1 : sql[end] == ')' ? -1 : 0;
                if (depth == 0)
                {
                    break;
                }
            }

            return new Filtered(sql[..start] + "TRUE" + sql[(end + 1)..], sql[..start] + sql[exists..end] + sql[(end + 1)..]);
        }
    }

    public static NpgsqlCommand BindRuns(NpgsqlCommand command, RunQuery q, string? tenant, (DateTimeOffset CreatedAt, Guid Id)? cursor)
    {
        command.Parameters.Add(P.UuidArrayOrNull(q.Ids));
        command.Parameters.Add(P.EnumArray(q.States?.Select(state => state.ToDb()).ToList()));
        command.Parameters.Add(P.Uuid(q.AgentId));
        command.Parameters.Add(P.Uuid(q.SessionId));
        command.Parameters.Add(P.Text(q.Mode is { } mode ? mode.ToDb() : null));
        command.Parameters.Add(P.Timestamp(q.CreatedAfter));
        command.Parameters.Add(P.Timestamp(q.CreatedBefore));
        command.Parameters.Add(P.Bool(q.RootOnly));
        command.Parameters.Add(P.Jsonb(tenant));
        command.Parameters.Add(P.Timestamp(cursor?.CreatedAt));
        command.Parameters.Add(P.Uuid(cursor?.Id));
        command.Parameters.Add(P.Int(q.Limit + 1));
        return command;
    }

    public static NpgsqlCommand BindSessions(NpgsqlCommand command, SessionQuery q, string? tenant, (DateTimeOffset CreatedAt, Guid Id)? cursor)
    {
        command.Parameters.Add(P.UuidArrayOrNull(q.Ids));
        command.Parameters.Add(P.Jsonb(tenant));
        command.Parameters.Add(P.Bool(q.RootOnly));
        command.Parameters.Add(P.Timestamp(q.CreatedAfter));
        command.Parameters.Add(P.Timestamp(cursor?.CreatedAt));
        command.Parameters.Add(P.Uuid(cursor?.Id));
        command.Parameters.Add(P.Int(q.Limit + 1));
        command.Parameters.Add(P.Timestamp(q.CreatedBefore));
        return command;
    }

    public static NpgsqlCommand BindCompactionEvents(NpgsqlCommand command, CompactionEventQuery q, string? tenant,
        (DateTimeOffset CreatedAt, Guid Id)? cursor)
    {
        command.Parameters.Add(P.Uuid(q.SessionId));
        command.Parameters.Add(P.Jsonb(tenant));
        command.Parameters.Add(P.Timestamp(q.CreatedAfter));
        command.Parameters.Add(P.Timestamp(cursor?.CreatedAt));
        command.Parameters.Add(P.Uuid(cursor?.Id));
        command.Parameters.Add(P.Int(q.Limit + 1));
        return command;
    }

    public static NpgsqlCommand BindToolExecutions(NpgsqlCommand command, ToolExecutionQuery q, string? tenant,
        (DateTimeOffset CreatedAt, Guid Id)? cursor)
    {
        command.Parameters.Add(P.UuidArrayOrNull(q.Ids));
        command.Parameters.Add(P.Uuid(q.RunId));
        command.Parameters.Add(P.Text(q.ToolName));
        command.Parameters.Add(P.EnumArray(q.States?.Select(state => state.ToDb()).ToList()));
        command.Parameters.Add(P.BoolOrNull(q.IsAgentTool));
        command.Parameters.Add(P.Jsonb(tenant));
        command.Parameters.Add(P.Timestamp(cursor?.CreatedAt));
        command.Parameters.Add(P.Uuid(cursor?.Id));
        command.Parameters.Add(P.Int(q.Limit + 1));
        command.Parameters.Add(P.Timestamp(q.CreatedAfter));
        command.Parameters.Add(P.Timestamp(q.CreatedBefore));
        return command;
    }

    public static void BindStatistics(NpgsqlParameterCollection parameters, TimeSpan window, TimeSpan bucket, string? tenant)
    {
        parameters.Add(P.Interval(window));
        parameters.Add(P.Interval(bucket));
        parameters.Add(P.Jsonb(tenant));
    }

    public static InstanceInfo ReadInstance(NpgsqlDataReader r) => new()
    {
        Id = r.GetString(0),
        Name = r.GetString(1),
        Hostname = r.IsDBNull(2) ? null : r.GetString(2),
        ProcessId = r.IsDBNull(3) ? null : r.GetInt32(3),
        Version = r.IsDBNull(4) ? null : r.GetString(4),
        MaxConcurrentRuns = r.GetInt32(5),
        MaxConcurrentTools = r.GetInt32(6),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(7),
        LastHeartbeatAt = r.GetFieldValue<DateTimeOffset>(8),
        HeartbeatAge = r.GetTimeSpan(9),
        IsLeader = r.GetBoolean(10),
        Tools = r.GetFieldValue<string[]>(11),
        ActiveRuns = r.GetInt32(12),
        ActiveToolExecutions = r.GetInt32(13),
    };

    public static (DateTimeOffset Since, DateTimeOffset Until) ReadWindow(NpgsqlDataReader r)
        => (r.GetFieldValue<DateTimeOffset>(0), r.GetFieldValue<DateTimeOffset>(1));

    public static QueueDepth ReadQueueDepth(NpgsqlDataReader r)
        => new(DbEnums.ParseRunMode(r.GetString(0)), DbEnums.ParseRunState(r.GetString(1)), r.GetInt32(2));

    public static (DateTimeOffset Start, RunState State, int Count, Usage Usage) ReadBucketState(NpgsqlDataReader r)
        => (r.GetFieldValue<DateTimeOffset>(0), DbEnums.ParseRunState(r.GetString(1)), r.GetInt32(2), new Usage
        {
            InputTokens = r.GetInt64(3),
            OutputTokens = r.GetInt64(4),
            CacheCreationInputTokens = r.GetInt64(5),
            CacheReadInputTokens = r.GetInt64(6),
        });
}
