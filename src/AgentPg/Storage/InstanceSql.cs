using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_instances, agentpg_instance_tools and agentpg_tools.</summary>
internal sealed class InstanceSql
{
    public InstanceSql(SchemaName s)
    {
        // $1 id, $2 name, $3 hostname, $4 pid, $5 version, $6 max_concurrent_runs, $7 max_concurrent_tools
        Register = $"""
            INSERT INTO {s}.agentpg_instances (id, name, hostname, pid, version, max_concurrent_runs, max_concurrent_tools)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            ON CONFLICT (id) DO UPDATE
               SET name = EXCLUDED.name, hostname = EXCLUDED.hostname, pid = EXCLUDED.pid, version = EXCLUDED.version,
                   max_concurrent_runs = EXCLUDED.max_concurrent_runs, max_concurrent_tools = EXCLUDED.max_concurrent_tools,
                   last_heartbeat_at = now()
            """;
        // 0 rows: the instance was evicted as stale while alive; it re-registers.
        // $2: the ids of the runs and tool executions in flight, $3: whether no claim was in flight when they were read (see
        // HeldWork and agentpg_release_unheld_work). held_reported_at is a time no later than that read, by the database
        // clock: the previous heartbeat (or the registration), which returned before it. Not this statement's now(): the
        // process can stall between the read and the write (a starved thread pool, a wait for a pooled connection) while
        // it claims more, and a report dated at the write would then vouch for claims its ids predate. A snapshot taken
        // during a claim leaves the date where it was: it can miss what that claim takes.
        Heartbeat = $"""
            UPDATE {s}.agentpg_instances
               SET last_heartbeat_at = now(), held_work = $2,
                   held_reported_at = CASE WHEN $3 THEN last_heartbeat_at ELSE held_reported_at END
             WHERE id = $1
            """;
        // Health checks: seconds since the instance's last heartbeat, by the database clock; no row when it is not registered.
        HeartbeatAge = $"SELECT extract(epoch FROM now() - last_heartbeat_at)::float8 FROM {s}.agentpg_instances WHERE id = $1";
        // Health checks: the live lease's holder, or for how long no instance has held one, counted from this instance's
        // registration at the earliest (it competes for the lease from then on); no row when it is not registered.
        LeaderStatus = $"""
            SELECT CASE WHEN l.expires_at > now() THEN l.leader_id END,
                   CASE WHEN l.expires_at > now() THEN NULL
                        ELSE extract(epoch FROM now() - greatest(coalesce(l.expires_at, i.created_at), i.created_at))::float8 END
              FROM {s}.agentpg_instances i LEFT JOIN {s}.agentpg_leader l ON TRUE
             WHERE i.id = $1
            """;
        Delete = $"DELETE FROM {s}.agentpg_instances WHERE id = $1";
        // Graceful shutdown: give everything back without counting it as a rescue.
        ReleaseWork = $"SELECT released FROM {s}.agentpg_release_instance_work($1, FALSE, 2147483647)";
        // $1 names, $2 descriptions, $3 input schemas (JSON)
        UpsertTools = $"""
            INSERT INTO {s}.agentpg_tools (name, description, input_schema)
            SELECT * FROM unnest($1::text[], $2::text[], $3::jsonb[])
            ON CONFLICT (name) DO UPDATE
               SET description = EXCLUDED.description, input_schema = EXCLUDED.input_schema, updated_at = now()
             WHERE agentpg_tools.description IS DISTINCT FROM EXCLUDED.description
                OR agentpg_tools.input_schema IS DISTINCT FROM EXCLUDED.input_schema
            """;
        // $1 instance id, $2 tool names
        RegisterTools = $"""
            INSERT INTO {s}.agentpg_instance_tools (instance_id, tool_name)
            SELECT $1, unnest($2::text[])
            ON CONFLICT DO NOTHING
            """;
        // $1 instance id, $2 tool names: tools this instance no longer has (runs needing them go elsewhere)
        UnregisterTools = $"DELETE FROM {s}.agentpg_instance_tools WHERE instance_id = $1 AND tool_name = ANY($2::text[])";
    }

    public string Register { get; }

    public string Heartbeat { get; }

    public string HeartbeatAge { get; }

    public string LeaderStatus { get; }

    public string Delete { get; }

    public string ReleaseWork { get; }

    public string UpsertTools { get; }

    public string RegisterTools { get; }

    public string UnregisterTools { get; }

    /// <summary>Adds <see cref="Register"/> for an instance.</summary>
    public void AddRegister(NpgsqlBatch batch, string instanceId, string? name, string hostname, string version, int maxConcurrentRuns,
        int maxConcurrentTools)
        => batch.Append(Register, P.Text(instanceId), P.Text(name), P.Text(hostname), P.Int(Environment.ProcessId), P.Text(version),
            P.Int(maxConcurrentRuns), P.Int(maxConcurrentTools));

    /// <summary>Adds <see cref="UpsertTools"/> and <see cref="RegisterTools"/> for the tools (nothing when there are none).</summary>
    public void AddRegisterTools(NpgsqlBatch batch, string instanceId, IEnumerable<ITool> tools)
    {
        var ordered = tools.OrderBy(t => t.Name, StringComparer.Ordinal).ToList();
        if (ordered.Count == 0)
        {
            return;
        }

        batch.Append(UpsertTools, P.TextArray([.. ordered.Select(t => t.Name)]), P.TextArray([.. ordered.Select(t => t.Description)]),
            P.TextArray([.. ordered.Select(t => t.InputSchema.ToJson())]));
        batch.Append(RegisterTools, P.Text(instanceId), P.TextArray([.. ordered.Select(t => t.Name)]));
    }

    /// <summary>Adds <see cref="UnregisterTools"/>.</summary>
    public void AddUnregisterTools(NpgsqlBatch batch, string instanceId, IReadOnlyList<string> names)
        => batch.Append(UnregisterTools, P.Text(instanceId), P.TextArray(names));

    /// <summary>Adds <see cref="ReleaseWork"/> (its one row: how many items were released) and <see cref="Delete"/>.</summary>
    public void AddDeregister(NpgsqlBatch batch, string instanceId)
    {
        batch.Append(ReleaseWork, P.Text(instanceId));
        batch.Append(Delete, P.Text(instanceId));
    }

    /// <summary>A command for <see cref="Heartbeat"/>, reporting <paramref name="held"/> (see <see cref="Runs.HeldWork"/>); 0 rows:
    /// the instance was evicted.</summary>
    public NpgsqlCommand HeartbeatCommand(NpgsqlDataSource dataSource, string instanceId, Runs.HeldSnapshot held)
        => Db.Command(dataSource, null, Heartbeat, P.Text(instanceId), P.UuidArray(held.Ids), P.Bool(held.Complete));

    /// <summary>A command for <see cref="LeaderStatus"/>: the live leader's id (or null) and the seconds without one (or null).</summary>
    public NpgsqlCommand LeaderStatusCommand(NpgsqlDataSource dataSource, string instanceId)
        => Db.Command(dataSource, null, LeaderStatus, P.Text(instanceId));

    /// <summary>A command for <see cref="HeartbeatAge"/>: seconds as float8, or no row.</summary>
    public NpgsqlCommand HeartbeatAgeCommand(NpgsqlDataSource dataSource, string instanceId)
        => Db.Command(dataSource, null, HeartbeatAge, P.Text(instanceId));
}
