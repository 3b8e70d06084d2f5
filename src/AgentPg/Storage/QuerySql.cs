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

        // The created_at range and one keyset page of alias a, newest first: from and before bound created_at (each may be
        // null), at/id are the cursor (created_at and id of the last row shown), limit the page size. The duplicated
        // created_at bound lets the created_at index serve the keyset; the row comparison breaks ties on id.
        static string Page(string a, string from, string? before, string at, string id, string limit)
            => $"   AND ({from}::timestamptz IS NULL OR {a}.created_at >= {from})\n"
               + (before is null ? "" : $"   AND ({before}::timestamptz IS NULL OR {a}.created_at < {before})\n")
               + $"   AND ({at}::timestamptz IS NULL OR ({a}.created_at <= {at} AND ({a}.created_at, {a}.id) < ({at}, {id})))\n"
               + $" ORDER BY {a}.created_at DESC, {a}.id DESC\n"
               + $" LIMIT {limit}";

        // $1 ids, $2 states, $3 agent, $4 session, $5 mode, $6 created from, $7 created before, $8 root only, $9 tenant,
        // $10/$11 cursor (created_at, id), $12 limit.
        Runs = Filtered.Split($"""
            SELECT {RunSql.Prefixed("r")}
              FROM {runs} r
             WHERE ($1::uuid[] IS NULL OR r.id = ANY($1))
               AND ($2::{s}.agentpg_run_state[] IS NULL OR r.state = ANY($2))
               -- Failed and cancelled runs have an error type: with only those states asked for, this folds to the predicate of
               -- agentpg_idx_runs_errored, and the page is read from that index.
               AND ($2::{s}.agentpg_run_state[] IS NULL OR NOT ($2 <@ ARRAY['failed', 'cancelled']::{s}.agentpg_run_state[])
                    OR r.error_type IS NOT NULL)
               AND ($3::uuid IS NULL OR r.agent_id = $3)
               AND ($4::uuid IS NULL OR r.session_id = $4)
               AND ($5::text IS NULL OR r.run_mode::text = $5)
               AND (NOT $8 OR r.parent_run_id IS NULL)
               AND ($9::jsonb IS NULL OR EXISTS (SELECT 1 FROM {sessions} s WHERE s.id = r.session_id AND s.metadata @> $9))
            {Page("r", "$6", "$7", "$10", "$11", "$12")}
            """);

        // $1 ids, $2 tenant, $3 root only, $4 created from, $5/$6 cursor, $7 limit, $8 created before.
        Sessions = $"""
            SELECT s.id, s.parent_session_id, s.depth, s.metadata::text, s.compaction_count, s.created_at, s.updated_at
              FROM {sessions} s
             WHERE ($1::uuid[] IS NULL OR s.id = ANY($1))
               AND ($2::jsonb IS NULL OR s.metadata @> $2)
               AND (NOT $3 OR s.parent_session_id IS NULL)
            {Page("s", "$4", "$8", "$5", "$6", "$7")}
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
            {Page("te", "$10", "$11", "$7", "$8", "$9")}
            """);

        // $1 session, $2 tenant, $3 created from, $4/$5 cursor, $6 limit.
        CompactionEvents = Filtered.Split($"""
            SELECT {CompactionSql.EventColumns}
              FROM {s}.agentpg_compaction_events e
             WHERE ($1::uuid IS NULL OR e.session_id = $1)
               AND ($2::jsonb IS NULL OR EXISTS (SELECT 1 FROM {sessions} s WHERE s.id = e.session_id AND s.metadata @> $2))
            {Page("e", "$3", null, "$4", "$5", "$6")}
            """);

        // Instances with their heartbeat age by the database clock, leadership, tools and in-flight work.
        // A pending run has no holder: its queue row is left out before the join (as in agentpg_rescue), so neither a backlog
        // nor statistics that say claimed runs are rare make the in-flight count read every run, once per instance.
        Instances = $"""
            SELECT i.id, i.name, i.hostname, i.pid, i.version, i.max_concurrent_runs, i.max_concurrent_tools, i.created_at,
                   i.last_heartbeat_at, now() - i.last_heartbeat_at,
                   EXISTS (SELECT 1 FROM {s}.agentpg_leader l WHERE l.leader_id = i.id AND l.expires_at > now()),
                   coalesce((SELECT array_agg(it.tool_name ORDER BY it.tool_name) FROM {s}.agentpg_instance_tools it
                              WHERE it.instance_id = i.id), ARRAY[]::text[]),
                   (SELECT count(*) FROM {s}.agentpg_run_queue q JOIN {runs} r ON r.id = q.run_id
                     WHERE q.state <> 'pending' AND r.claimed_by_instance_id = i.id
                       AND r.state NOT IN ('completed', 'cancelled', 'failed'))::int,
                   (SELECT count(*) FROM {tools} te WHERE te.claimed_by_instance_id = i.id AND te.state = 'running')::int
              FROM {s}.agentpg_instances i
             ORDER BY i.created_at, i.id
            """;

        // $1 window start offset (interval), $2 bucket (interval), $3 tenant. One statement per result; see Read* below.
        var tenant = $"($3::jsonb IS NULL OR EXISTS (SELECT 1 FROM {sessions} s WHERE s.id = r.session_id AND s.metadata @> $3))";
        // The window by the database clock.
        StatisticsWindow = "SELECT now() - $1::interval, now(), $2::interval, $3::jsonb";
        // Non-terminal runs are few: agentpg_run_queue holds exactly them, with their mode, state and session (a scan of that
        // small table, no run row read).
        StatisticsQueue = Filtered.Split($"""
            SELECT r.run_mode::text, r.state::text, count(*)::int
              FROM {s}.agentpg_run_queue r
             WHERE {tenant}
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

        // Usage (GetUsageAsync): $1 since, $2 until (completion time, each may be null), $3 tenant, $4 agent, $5 model, $6 root run,
        // $7 session, $8/$9 the first grouping and its metadata key, $10/$11 the second. Every model call that completed or that
        // Claude billed before it failed: the iterations of runs (delegated runs included) and the compactions' summaries. One
        // row per grouping set: the groups by model and batch (the cost needs both), the groups alone (their runs, counted once), the model and batch of the total,
        // and the total.
        //
        // The time range reaches the iterations through their runs: an iteration completes after its run was created and, when
        // the run is final, no later than its finalization (the step that finalizes a run completes its iteration, in the same
        // transaction). So a run created after the range or finalized before it has no iteration in it; for a tenant the runs
        // come from the tenant's sessions (agentpg_idx_sessions_metadata, agentpg_idx_runs_session) and only the iterations of
        // the runs alive in the range are read, with no index on iteration times (whose completion would then no longer be a
        // HOT update).
        static string Key(string kind, string metadataKey)
            => $"CASE {kind}::text WHEN 'day' THEN to_char(c.at AT TIME ZONE 'UTC', 'YYYY-MM-DD') WHEN 'agent' THEN c.agent_id::text "
               + $"WHEN 'model' THEN c.model WHEN 'mode' THEN c.mode WHEN 'source' THEN c.source WHEN 'metadata' THEN c.metadata ->> {metadataKey}::text END";
        Usage = $"""
            WITH calls AS (
                SELECT 'run'::text AS source, i.completed_at AS at, r.id AS run_id, r.agent_id, a.name AS agent_name, r.run_mode::text AS mode,
                       s.metadata, coalesce(i.model, a.model) AS model, i.batch_id IS NOT NULL AS batch,
                       i.input_tokens::bigint AS input, i.output_tokens::bigint AS output, i.cache_creation_input_tokens::bigint AS cache_write,
                       i.cache_creation_1h_input_tokens::bigint AS cache_write_1h, i.cache_read_input_tokens::bigint AS cache_read,
                       coalesce(i.web_search_requests, 0)::bigint AS web_searches, coalesce(i.web_fetch_requests, 0)::bigint AS web_fetches
                  FROM {runs} r
                  JOIN {sessions} s ON s.id = r.session_id
                  JOIN {s}.agentpg_agents a ON a.id = r.agent_id
                  JOIN {s}.agentpg_iterations i ON i.run_id = r.id
                 WHERE i.completed_at IS NOT NULL
                   -- A failed iteration is a call only when Claude billed it (an answer that failed mid-way): not a request
                   -- never sent (no model), refused, unavailable to the end, or abandoned by a rescue before an answer.
                   AND (i.error_type IS NULL
                        OR i.input_tokens + i.output_tokens + i.cache_creation_input_tokens + i.cache_read_input_tokens > 0)
                   AND ($1::timestamptz IS NULL OR (i.completed_at >= $1 AND (r.finalized_at IS NULL OR r.finalized_at >= $1)))
                   AND ($2::timestamptz IS NULL OR (i.completed_at < $2 AND r.created_at < $2))
                   AND ($3::jsonb IS NULL OR s.metadata @> $3)
                   AND ($4::uuid IS NULL OR r.agent_id = $4)
                   AND ($5::text IS NULL OR coalesce(i.model, a.model) = $5)
                   -- The run and the runs it delegated to, at any depth (agentpg_idx_runs_parent), as one array: an InitPlan,
                   -- so the runs are found by their key.
                   AND ($6::uuid IS NULL OR r.id = ANY (ARRAY(
                        WITH RECURSIVE tree(id) AS (
                            SELECT $6::uuid
                            UNION ALL
                            SELECT c.id FROM {runs} c JOIN tree t ON c.parent_run_id = t.id)
                        SELECT id FROM tree)))
                   AND ($7::uuid IS NULL OR r.session_id = $7)
                UNION ALL
                -- A compaction's summary, in one or more calls to the summariser's model, none batched or cached with a 1-hour
                -- lifetime, with no server tools; it belongs to a session, not to a run or an agent.
                SELECT 'compaction', e.created_at, NULL, NULL, NULL, NULL, s.metadata, e.model_used, FALSE,
                       t.input, t.output, t.cache_write, 0, t.cache_read, 0, 0
                  FROM {s}.agentpg_compaction_events e
                  JOIN {sessions} s ON s.id = e.session_id
                 CROSS JOIN LATERAL (SELECT coalesce((e.usage ->> 'input_tokens')::bigint, 0) AS input,
                                            coalesce((e.usage ->> 'output_tokens')::bigint, 0) AS output,
                                            coalesce((e.usage ->> 'cache_creation_input_tokens')::bigint, 0) AS cache_write,
                                            coalesce((e.usage ->> 'cache_read_input_tokens')::bigint, 0) AS cache_read) t
                 WHERE $4::uuid IS NULL AND $6::uuid IS NULL
                   AND t.input + t.output + t.cache_write + t.cache_read > 0
                   AND ($1::timestamptz IS NULL OR e.created_at >= $1)
                   AND ($2::timestamptz IS NULL OR e.created_at < $2)
                   AND ($3::jsonb IS NULL OR s.metadata @> $3)
                   AND ($5::text IS NULL OR e.model_used = $5)
                   AND ($7::uuid IS NULL OR e.session_id = $7)
            ), keyed AS (
                SELECT c.*, {Key("$8", "$9")} AS k1, {Key("$10", "$11")} AS k2 FROM calls c
            )
            SELECT GROUPING(k1, k2) = 0, GROUPING(model, batch) = 0, k1, k2, model, batch, min(agent_name),
                   count(*), count(*) FILTER (WHERE batch), count(DISTINCT run_id),
                   coalesce(sum(input), 0)::bigint, coalesce(sum(output), 0)::bigint, coalesce(sum(cache_write), 0)::bigint,
                   coalesce(sum(cache_write_1h), 0)::bigint, coalesce(sum(cache_read), 0)::bigint,
                   coalesce(sum(web_searches), 0)::bigint, coalesce(sum(web_fetches), 0)::bigint
              FROM keyed
             GROUP BY GROUPING SETS ((k1, k2, model, batch), (k1, k2), (model, batch), ())
            """;
    }

    public Filtered Runs { get; }

    public string Sessions { get; }

    public Filtered ToolExecutions { get; }

    public Filtered CompactionEvents { get; }

    public string Instances { get; }

    public string StatisticsWindow { get; }

    public Filtered StatisticsQueue { get; }

    public Filtered StatisticsBuckets { get; }

    public string Usage { get; }

    /// <summary><see cref="Usage"/> for a query whose groupings are (kind, metadata key) pairs, kinds as <see cref="Usage"/>
    /// names them; rows for <see cref="ReadUsage"/>.</summary>
    public Task<List<UsageSqlRow>> UsageAsync(NpgsqlDataSource dataSource, UsageQuery q, string? tenant,
        IReadOnlyList<(string Kind, string? MetadataKey)> groups, CancellationToken cancellationToken)
    {
        (string? Kind, string? MetadataKey) Group(int i) => i < groups.Count ? groups[i] : (null, null);
        return Db.Command(dataSource, null, Usage, P.Timestamp(q.Since), P.Timestamp(q.Until), P.Jsonb(tenant), P.Uuid(q.AgentId), P.Text(q.Model),
                P.Uuid(q.RootRunId), P.Uuid(q.SessionId), P.Text(Group(0).Kind), P.Text(Group(0).MetadataKey), P.Text(Group(1).Kind),
                P.Text(Group(1).MetadataKey))
            .QueryListAsync(ReadUsage, cancellationToken);
    }

    /// <summary>One row of <see cref="Usage"/>: whether it is grouped by the keys, and by model and batch; the keys; the sums.</summary>
    internal readonly record struct UsageSqlRow(bool Keyed, bool Detailed, string? Key1, string? Key2, string? Model, bool Batch, string? AgentName,
        long Calls, long BatchCalls, long Runs, long Input, long Output, long CacheWrite, long CacheWrite1h, long CacheRead, long WebSearches,
        long WebFetches);

    public static UsageSqlRow ReadUsage(NpgsqlDataReader r) => new(r.GetBoolean(0), r.GetBoolean(1), r.IsDBNull(2) ? null : r.GetString(2),
        r.IsDBNull(3) ? null : r.GetString(3), r.IsDBNull(4) ? null : r.GetString(4), !r.IsDBNull(5) && r.GetBoolean(5), r.IsDBNull(6) ? null : r.GetString(6),
        r.GetInt64(7), r.GetInt64(8), r.GetInt64(9), r.GetInt64(10), r.GetInt64(11), r.GetInt64(12), r.GetInt64(13), r.GetInt64(14),
        r.GetInt64(15), r.GetInt64(16));

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

    /// <summary>One page of <see cref="Runs"/> (one row more than the page, to know whether another follows).</summary>
    public NpgsqlCommand RunsCommand(NpgsqlDataSource dataSource, RunQuery q, string? tenant, (DateTimeOffset CreatedAt, Guid Id)? cursor)
        => Db.Command(dataSource, null, Runs.For(tenant), P.UuidArrayOrNull(q.Ids), P.EnumArray(q.States?.Select(state => state.ToDb()).ToList()),
            P.Uuid(q.AgentId), P.Uuid(q.SessionId), P.Text(q.Mode is { } mode ? mode.ToDb() : null), P.Timestamp(q.CreatedAfter),
            P.Timestamp(q.CreatedBefore), P.Bool(q.RootOnly), P.Jsonb(tenant), P.Timestamp(cursor?.CreatedAt), P.Uuid(cursor?.Id), P.Int(q.Limit + 1));

    /// <summary>One page of <see cref="Sessions"/>, one row more.</summary>
    public NpgsqlCommand SessionsCommand(NpgsqlDataSource dataSource, SessionQuery q, string? tenant, (DateTimeOffset CreatedAt, Guid Id)? cursor)
        => Db.Command(dataSource, null, Sessions, P.UuidArrayOrNull(q.Ids), P.Jsonb(tenant), P.Bool(q.RootOnly), P.Timestamp(q.CreatedAfter),
            P.Timestamp(cursor?.CreatedAt), P.Uuid(cursor?.Id), P.Int(q.Limit + 1), P.Timestamp(q.CreatedBefore));

    /// <summary>One page of <see cref="CompactionEvents"/>, one row more.</summary>
    public NpgsqlCommand CompactionEventsCommand(NpgsqlDataSource dataSource, CompactionEventQuery q, string? tenant,
        (DateTimeOffset CreatedAt, Guid Id)? cursor)
        => Db.Command(dataSource, null, CompactionEvents.For(tenant), P.Uuid(q.SessionId), P.Jsonb(tenant), P.Timestamp(q.CreatedAfter),
            P.Timestamp(cursor?.CreatedAt), P.Uuid(cursor?.Id), P.Int(q.Limit + 1));

    /// <summary>One page of <see cref="ToolExecutions"/>, one row more.</summary>
    public NpgsqlCommand ToolExecutionsCommand(NpgsqlDataSource dataSource, ToolExecutionQuery q, string? tenant,
        (DateTimeOffset CreatedAt, Guid Id)? cursor)
        => Db.Command(dataSource, null, ToolExecutions.For(tenant), P.UuidArrayOrNull(q.Ids), P.Uuid(q.RunId), P.Text(q.ToolName),
            P.EnumArray(q.States?.Select(state => state.ToDb()).ToList()), P.BoolOrNull(q.IsAgentTool), P.Jsonb(tenant), P.Timestamp(cursor?.CreatedAt),
            P.Uuid(cursor?.Id), P.Int(q.Limit + 1), P.Timestamp(q.CreatedAfter), P.Timestamp(q.CreatedBefore));

    /// <summary>Every instance (<see cref="Instances"/>, rows for <see cref="ReadInstance"/>).</summary>
    public Task<List<InstanceInfo>> InstancesAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, Instances).QueryListAsync(ReadInstance, cancellationToken);

    /// <summary>Adds the statistics statements, in the order of their results: <see cref="StatisticsWindow"/> (one row for
    /// <see cref="ReadWindow"/>), <see cref="StatisticsQueue"/> (<see cref="ReadQueueDepth"/>) and <see cref="StatisticsBuckets"/>
    /// (<see cref="ReadBucketState"/>).</summary>
    public void AddStatistics(NpgsqlBatch batch, TimeSpan window, TimeSpan bucket, string? tenant)
    {
        foreach (var statement in new[] { StatisticsWindow, StatisticsQueue.For(tenant), StatisticsBuckets.For(tenant) })
        {
            batch.Append(statement, P.Interval(window), P.Interval(bucket), P.Jsonb(tenant));
        }
    }

    // Positions in Instances' SELECT list.
    private const int IdColumn = 0, NameColumn = 1, HostnameColumn = 2, PidColumn = 3, VersionColumn = 4, MaxRunsColumn = 5, MaxToolsColumn = 6,
        CreatedAtColumn = 7, HeartbeatAtColumn = 8, HeartbeatAgeColumn = 9, IsLeaderColumn = 10, ToolsColumn = 11, ActiveRunsColumn = 12,
        ActiveToolsColumn = 13;

    // Positions in StatisticsWindow's, StatisticsQueue's and StatisticsBuckets' SELECT lists.
    private const int SinceColumn = 0, UntilColumn = 1;
    private const int QueueModeColumn = 0, QueueStateColumn = 1, QueueCountColumn = 2;
    private const int BucketStartColumn = 0, BucketStateColumn = 1, BucketCountColumn = 2, BucketInputColumn = 3, BucketOutputColumn = 4,
        BucketCacheCreationColumn = 5, BucketCacheReadColumn = 6;

    public static InstanceInfo ReadInstance(NpgsqlDataReader r) => new()
    {
        Id = r.GetString(IdColumn),
        Name = r.GetString(NameColumn),
        Hostname = r.IsDBNull(HostnameColumn) ? null : r.GetString(HostnameColumn),
        ProcessId = r.IsDBNull(PidColumn) ? null : r.GetInt32(PidColumn),
        Version = r.IsDBNull(VersionColumn) ? null : r.GetString(VersionColumn),
        MaxConcurrentRuns = r.GetInt32(MaxRunsColumn),
        MaxConcurrentTools = r.GetInt32(MaxToolsColumn),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(CreatedAtColumn),
        LastHeartbeatAt = r.GetFieldValue<DateTimeOffset>(HeartbeatAtColumn),
        HeartbeatAge = r.GetTimeSpan(HeartbeatAgeColumn),
        IsLeader = r.GetBoolean(IsLeaderColumn),
        Tools = r.GetFieldValue<string[]>(ToolsColumn),
        ActiveRuns = r.GetInt32(ActiveRunsColumn),
        ActiveToolExecutions = r.GetInt32(ActiveToolsColumn),
    };

    public static (DateTimeOffset Since, DateTimeOffset Until) ReadWindow(NpgsqlDataReader r)
        => (r.GetFieldValue<DateTimeOffset>(SinceColumn), r.GetFieldValue<DateTimeOffset>(UntilColumn));

    public static QueueDepth ReadQueueDepth(NpgsqlDataReader r)
        => new(DbEnums.ParseRunMode(r.GetString(QueueModeColumn)), DbEnums.ParseRunState(r.GetString(QueueStateColumn)), r.GetInt32(QueueCountColumn));

    public static (DateTimeOffset Start, RunState State, int Count, Usage Usage) ReadBucketState(NpgsqlDataReader r)
        => (r.GetFieldValue<DateTimeOffset>(BucketStartColumn), DbEnums.ParseRunState(r.GetString(BucketStateColumn)), r.GetInt32(BucketCountColumn),
            new Usage
            {
                InputTokens = r.GetInt64(BucketInputColumn),
                OutputTokens = r.GetInt64(BucketOutputColumn),
                CacheCreationInputTokens = r.GetInt64(BucketCacheCreationColumn),
                CacheReadInputTokens = r.GetInt64(BucketCacheReadColumn),
            });
}
