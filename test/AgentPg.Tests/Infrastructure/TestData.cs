namespace AgentPg.Tests.Infrastructure;

/// <summary>Seeds rows of a test schema directly, in the state a test needs (for example the state a dead instance leaves
/// behind), so no test class writes its own INSERTs. Reach it as <see cref="SchemaFixture.Seed"/>.</summary>
public sealed class TestData(SchemaFixture db)
{
    /// <summary>An agent with a unique name.</summary>
    public Task<Guid> AgentAsync(string model = "claude-sonnet-4-5", IReadOnlyList<string>? tools = null)
        => db.ScalarAsync<Guid>(
            "INSERT INTO {schema}.agentpg_agents (name, model, system_prompt, tool_names) VALUES ($1, $2, 'You are a test agent.', $3) RETURNING id",
            "agent_" + Guid.NewGuid().ToString("N")[..10], model, (tools ?? []).ToArray());

    /// <summary>A root session.</summary>
    public Task<Guid> SessionAsync() => db.ScalarAsync<Guid>("INSERT INTO {schema}.agentpg_sessions DEFAULT VALUES RETURNING id");

    /// <summary>A pending root run (with its own agent and session unless given) and nothing else: no message, no iteration.</summary>
    public async Task<Guid> RunAsync(Guid? session = null, Guid? agent = null, string mode = "streaming", string prompt = "go")
        => await db.ScalarAsync<Guid>(
            $"INSERT INTO {{schema}}.agentpg_runs (session_id, agent_id, prompt, run_mode) VALUES ($1, $2, $3, '{Sql(mode)}') RETURNING id",
            session ?? await SessionAsync(), agent ?? await AgentAsync(), prompt);

    /// <summary>An instance whose last heartbeat was <paramref name="heartbeatAgo"/> ago.</summary>
    public Task InstanceAsync(string id, TimeSpan heartbeatAgo)
        => db.ExecuteAsync("INSERT INTO {schema}.agentpg_instances (id, name, last_heartbeat_at) VALUES ($1, $1, now() - $2)", id, heartbeatAgo);

    /// <summary>A dead instance: its last heartbeat was an hour ago.</summary>
    public Task DeadInstanceAsync(string id) => InstanceAsync(id, TimeSpan.FromHours(1));

    /// <summary>Gives <paramref name="leaderId"/> a live leader lease for an hour, as the elector would.</summary>
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

    // Enum values are written into the text (their types live in the test schema); only known words get there.
    private static string Sql(string word)
        => word.All(c => char.IsAsciiLetterLower(c) || c == '_') ? word : throw new ArgumentException($"'{word}' is not an enum value.", nameof(word));
}
