namespace AgentPg.Tests.Infrastructure;

/// <summary>Seeds rows of a test schema directly, in the state a test needs (for example the state a dead instance leaves
/// behind), so no test class writes its own INSERTs. Reach it as <see cref="SchemaFixture.Seed"/>.</summary>
public sealed class TestData(SchemaFixture db)
{
    /// <summary>An agent with a unique name (and, when given, these agents as its delegates, in this order).</summary>
    public Task<Guid> AgentAsync(string model = "claude-sonnet-4-5", IReadOnlyList<string>? tools = null, IReadOnlyList<Guid>? delegates = null)
        => db.ScalarAsync<Guid>(
            "INSERT INTO {schema}.agentpg_agents (name, model, system_prompt, tool_names, agent_ids) VALUES ($1, $2, 'You are a test agent.', $3, $4) RETURNING id",
            "agent_" + Guid.NewGuid().ToString("N")[..10], model, (tools ?? []).ToArray(), (delegates ?? []).ToArray());

    /// <summary><paramref name="count"/> pending streaming runs of <paramref name="agent"/>, each in a session of its own, in one
    /// statement (a backlog for the plan tests).</summary>
    public Task PendingRunsAsync(Guid agent, int count)
        => db.ExecuteAsync("""
            WITH sessions AS (INSERT INTO {schema}.agentpg_sessions (metadata) SELECT '{}' FROM generate_series(1, $2) RETURNING id)
            INSERT INTO {schema}.agentpg_runs (session_id, agent_id, prompt, run_mode) SELECT id, $1, 'go', 'streaming' FROM sessions
            """, agent, count);

    /// <summary>The statistics of an application's run table after a burst: <paramref name="history"/> finished runs of
    /// <paramref name="agent"/>, the run table and the queue analyzed then (nothing pending), then <paramref name="backlog"/>
    /// pending runs and only the queue analyzed again, as autovacuum does first for the small table.</summary>
    public async Task BacklogAfterHistoryAsync(Guid agent, int history, int backlog)
    {
        await PendingRunsAsync(agent, history);
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET state = 'completed', started_at = now() WHERE agent_id = $1", agent);
        await db.ExecuteAsync("ANALYZE {schema}.agentpg_runs, {schema}.agentpg_run_queue, {schema}.agentpg_agents");
        await PendingRunsAsync(agent, backlog);
        await db.ExecuteAsync("ANALYZE {schema}.agentpg_run_queue");
    }

    /// <summary>A root session.</summary>
    public Task<Guid> SessionAsync() => db.ScalarAsync<Guid>("INSERT INTO {schema}.agentpg_sessions DEFAULT VALUES RETURNING id");

    /// <summary>A pending root run (with its own agent and session unless given) and nothing else: no message, no iteration.</summary>
    public async Task<Guid> RunAsync(Guid? session = null, Guid? agent = null, string mode = "streaming", string prompt = "go")
        => await db.ScalarAsync<Guid>(
            $"INSERT INTO {{schema}}.agentpg_runs (session_id, agent_id, prompt, run_mode) VALUES ($1, $2, $3, '{Sql(mode)}') RETURNING id",
            session ?? await SessionAsync(), agent ?? await AgentAsync(), prompt);

    /// <summary>A pending child run of <paramref name="parent"/> (a delegation to <paramref name="agent"/>) in the parent's session.</summary>
    public Task<Guid> ChildRunAsync(Guid parent, Guid agent, string prompt = "do the part")
        => db.ScalarAsync<Guid>(
            "INSERT INTO {schema}.agentpg_runs (session_id, agent_id, prompt, run_mode, parent_run_id, depth) " +
            "SELECT session_id, $2, $3, run_mode, id, depth + 1 FROM {schema}.agentpg_runs WHERE id = $1 RETURNING id",
            parent, agent, prompt);

    /// <summary>A compaction summary of <paramref name="session"/> (a user message without a run) with one text block.</summary>
    public Task<Guid> SummaryAsync(Guid session, string text)
        => db.ScalarAsync<Guid>(
            "INSERT INTO {schema}.agentpg_messages (session_id, role, is_summary, content) " +
            "VALUES ($1, 'user', true, jsonb_build_array(jsonb_build_object('type', 'text', 'text', $2::text))) RETURNING id", session, text);

    /// <summary>An instance whose last heartbeat was <paramref name="heartbeatAgo"/> ago.</summary>
    public Task InstanceAsync(string id, TimeSpan heartbeatAgo)
        => db.ExecuteAsync("INSERT INTO {schema}.agentpg_instances (id, name, last_heartbeat_at) VALUES ($1, $1, now() - $2)", id, heartbeatAgo);

    /// <summary>A dead instance: its last heartbeat was an hour ago.</summary>
    public Task DeadInstanceAsync(string id) => InstanceAsync(id, TimeSpan.FromHours(1));

    /// <summary>Gives <paramref name="leaderId"/> a live leader lease for an hour, whoever holds it now.</summary>
    public Task LeaseAsync(string leaderId)
        => db.ExecuteAsync(
            "INSERT INTO {schema}.agentpg_leader (name, leader_id, elected_at, expires_at) VALUES ('default', $1, now(), now() + interval '1 hour') " +
            "ON CONFLICT (name) DO UPDATE SET leader_id = EXCLUDED.leader_id, expires_at = EXCLUDED.expires_at", leaderId);

    /// <summary>Makes <paramref name="run"/> look claimed by <paramref name="holder"/> <paramref name="claimedAgo"/> ago, in
    /// <paramref name="state"/>, already rescued <paramref name="rescueAttempts"/> times.</summary>
    public Task ClaimRunAsync(Guid run, string holder, TimeSpan claimedAgo, string state = "streaming", int rescueAttempts = 0)
        => db.ExecuteAsync(
            $"UPDATE {{schema}}.agentpg_runs SET state = '{Sql(state)}', claimed_by_instance_id = $2, claimed_at = now() - $3, " +
            "claim_epoch = claim_epoch + 1, rescue_attempts = $4, started_at = now() WHERE id = $1", run, holder, claimedAgo, rescueAttempts);

    /// <summary>A user message of <paramref name="run"/> with one text block.</summary>
    public Task<Guid> UserTextAsync(Guid session, Guid run, string text)
        => db.ScalarAsync<Guid>(
            "INSERT INTO {schema}.agentpg_messages (session_id, run_id, role, content) " +
            "VALUES ($1, $2, 'user', jsonb_build_array(jsonb_build_object('type', 'text', 'text', $3::text))) RETURNING id", session, run, text);

    /// <summary>An assistant message of <paramref name="run"/> with one tool_use block (input <c>{}</c>), as Claude's response
    /// is recorded.</summary>
    public Task<Guid> ToolUseAsync(Guid session, Guid run, string toolUseId, string toolName)
        => db.ScalarAsync<Guid>(
            "INSERT INTO {schema}.agentpg_messages (session_id, run_id, role, content) VALUES ($1, $2, 'assistant', " +
            "jsonb_build_array(jsonb_build_object('type', 'tool_use', 'id', $3::text, 'name', $4::text, 'input', '{}'::jsonb))) RETURNING id",
            session, run, toolUseId, toolName);

    /// <summary>A completed streaming iteration of <paramref name="run"/> that stopped for <paramref name="toolExecutions"/>
    /// tool calls, and the run moved on to it: in pending_tools with it as current iteration.</summary>
    public async Task<Guid> ToolIterationAsync(Guid run, int number = 1, int toolExecutions = 1)
    {
        var iteration = await db.ScalarAsync<Guid>(
            "INSERT INTO {schema}.agentpg_iterations (run_id, iteration_number, is_streaming, completed_at, stop_reason, has_tool_use, tool_execution_count) " +
            "VALUES ($1, $2, true, now(), 'tool_use', true, $3) RETURNING id", run, number, toolExecutions);
        await db.ExecuteAsync(
            "UPDATE {schema}.agentpg_runs SET state = 'pending_tools', current_iteration = $3, current_iteration_id = $2, iteration_count = $3, " +
            "tool_iterations = tool_iterations + 1, started_at = coalesce(started_at, now()) WHERE id = $1", run, iteration, number);
        return iteration;
    }

    /// <summary>A streaming iteration of <paramref name="run"/> in progress (no result yet), and the run's current one.</summary>
    public async Task<Guid> RunningIterationAsync(Guid run, int number = 1)
    {
        var iteration = await db.ScalarAsync<Guid>(
            "INSERT INTO {schema}.agentpg_iterations (run_id, iteration_number, is_streaming, started_at) VALUES ($1, $2, true, now()) RETURNING id",
            run, number);
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET current_iteration = $3, current_iteration_id = $2 WHERE id = $1", run, iteration, number);
        return iteration;
    }

    /// <summary>A tool execution (input <c>{}</c>) of <paramref name="iteration"/>: pending, or running on
    /// <paramref name="holder"/> since <paramref name="claimedAgo"/> in its first attempt.</summary>
    public Task<Guid> ToolExecutionAsync(Guid run, Guid iteration, string toolUseId, string toolName, string? holder = null, TimeSpan? claimedAgo = null)
        => holder is null
            ? db.ScalarAsync<Guid>(
                "INSERT INTO {schema}.agentpg_tool_executions (run_id, iteration_id, tool_use_id, tool_name, tool_input) VALUES ($1, $2, $3, $4, '{}') RETURNING id",
                run, iteration, toolUseId, toolName)
            : db.ScalarAsync<Guid>(
                "INSERT INTO {schema}.agentpg_tool_executions (run_id, iteration_id, tool_use_id, tool_name, tool_input, state, claimed_by_instance_id, claimed_at, " +
                "attempt_count, claim_epoch, started_at) VALUES ($1, $2, $3, $4, '{}', 'running', $5, now() - $6, 1, 1, now()) RETURNING id",
                run, iteration, toolUseId, toolName, holder, claimedAgo ?? TimeSpan.Zero);

    /// <summary>A root session with <paramref name="metadata"/> (a JSON object).</summary>
    public Task<Guid> SessionAsync(string metadata)
        => db.ScalarAsync<Guid>("INSERT INTO {schema}.agentpg_sessions (metadata) VALUES ($1::jsonb) RETURNING id", metadata);

    /// <summary>Ends <paramref name="run"/> in <paramref name="state"/> (completed, failed or cancelled) with the given token usage.</summary>
    public Task FinishRunAsync(Guid run, string state = "completed", int inputTokens = 0, int outputTokens = 0)
        => db.ExecuteAsync(
            $"UPDATE {{schema}}.agentpg_runs SET state = '{Sql(state)}', input_tokens = $2, output_tokens = $3, started_at = coalesce(started_at, now()) " +
            "WHERE id = $1", run, inputTokens, outputTokens);

    /// <summary>Completes <paramref name="execution"/> with <paramref name="output"/>.</summary>
    public Task CompleteToolExecutionAsync(Guid execution, string output, bool isError = false)
        => db.ExecuteAsync(
            "UPDATE {schema}.agentpg_tool_executions SET state = 'completed', tool_output = $2, is_error = $3, started_at = coalesce(started_at, now()), " +
            "completed_at = now() WHERE id = $1", execution, output, isError);

    /// <summary>Ends the current leader lease, as if its holder stopped refreshing it.</summary>
    public Task ExpireLeaseAsync() => db.ExecuteAsync("UPDATE {schema}.agentpg_leader SET expires_at = now() - interval '1 second'");

    // Enum values are written into the text (their types live in the test schema); only known words get there.
    private static string Sql(string word)
        => word.All(c => char.IsAsciiLetterLower(c) || c == '_') ? word : throw new ArgumentException($"'{word}' is not an enum value.", nameof(word));
}
