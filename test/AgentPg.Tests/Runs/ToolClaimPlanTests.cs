using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Runs;

/// <summary>The tool-execution claim's plan does not depend on the size the queue of pending executions had when a
/// connection planned it (<see cref="ClaimPlanTests"/> for the run claim): one claim reads the executions it claims, not the
/// backlog.</summary>
public sealed class ToolClaimPlanTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const int Backlog = 3_000;
    private const string Instance = "tool-plan-test";

    [DatabaseFact]
    public async Task ToolClaim_BacklogWhileThePlannerPrefersAnotherPathThanTheClaimIndex_ReadsTheClaimedExecutionNotTheWholeBacklog()
    {
        var agent = await RegisterAsync();
        await InsertToolExecutionsAsync(agent, Backlog, "pending");
        var oldest = await OldestPendingAsync();

        // What statistics can make of a small queue (a bitmap scan of every pending execution, sorted, then limited), done
        // here deterministically: the session turns the ordered index scan off.
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using (var prefer = new NpgsqlCommand("SET enable_indexscan = off", connection))
        {
            await prefer.ExecuteNonQueryAsync();
        }

        await using var transaction = await connection.BeginTransactionAsync();
        Assert.Equal(1, (await ClaimAsync(connection)).Rows);
        var (rows, pages) = await ClaimAsync(connection);
        Assert.Equal(1, rows);
        // One execution: its index entry, row, agent, run and the update's triggers, about fifty pages; the backlog is hundreds.
        Assert.True(pages < 100, $"a claim of one tool execution read {pages} pages");
        Assert.Equal(oldest, await FirstClaimedAsync(connection));
    }

    [DatabaseFact]
    public async Task ToolClaim_BacklogAfterStatisticsSaidPendingExecutionsWereRare_ReadsTheClaimedExecutionNotTheWholeBacklog()
    {
        // An application's history: many finished executions, the table analyzed while none was pending; then a burst.
        var agent = await RegisterAsync();
        await InsertToolExecutionsAsync(agent, Backlog, "completed");
        await db.ExecuteAsync("ANALYZE {schema}.agentpg_tool_executions, {schema}.agentpg_agents, {schema}.agentpg_instance_tools");
        await InsertToolExecutionsAsync(agent, Backlog, "pending");
        var oldest = await OldestPendingAsync();

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        Assert.Equal(1, (await ClaimAsync(connection)).Rows);
        var (rows, pages) = await ClaimAsync(connection);
        Assert.Equal(1, rows);
        Assert.True(pages < 100, $"a claim of one tool execution read {pages} pages");
        Assert.Equal(oldest, await FirstClaimedAsync(connection));
    }

    // Runs the claim of one execution under EXPLAIN ANALYZE: the rows it claimed and the pages it read (the function's
    // statements included). The first call of a connection also reads the catalogs to plan.
    private Task<(int Rows, long Pages)> ClaimAsync(NpgsqlConnection connection)
        => Explained.RunAsync(connection, $"SELECT id FROM \"{db.Schema}\".agentpg_claim_tool_executions('{Instance}', 1)");

    private Task<Guid> OldestPendingAsync()
        => db.ScalarAsync<Guid>(
            "SELECT id FROM {schema}.agentpg_tool_executions WHERE state = 'pending' ORDER BY scheduled_at, created_at LIMIT 1");

    private async Task<Guid> FirstClaimedAsync(NpgsqlConnection connection)
    {
        await using var first = new NpgsqlCommand(
            $"SELECT id FROM \"{db.Schema}\".agentpg_tool_executions WHERE state = 'running' ORDER BY scheduled_at, created_at LIMIT 1",
            connection);
        return (Guid)(await first.ExecuteScalarAsync())!;
    }

    // An agent with the tool "lookup", registered on the instance that claims.
    private async Task<Guid> RegisterAsync()
    {
        await db.ExecuteAsync("""
            INSERT INTO {schema}.agentpg_tools (name, description, input_schema) VALUES ('lookup', 'Looks up.', '{"type": "object"}')
            ON CONFLICT (name) DO NOTHING
            """);
        await db.ExecuteAsync("""
            INSERT INTO {schema}.agentpg_instances (id, name, last_heartbeat_at) VALUES ($1, $1, now()) ON CONFLICT (id) DO NOTHING
            """, Instance);
        await db.ExecuteAsync(
            "INSERT INTO {schema}.agentpg_instance_tools (instance_id, tool_name) VALUES ($1, 'lookup') ON CONFLICT DO NOTHING", Instance);
        return await db.Seed.AgentAsync(tools: ["lookup"]);
    }

    // Tool executions in the given state, each of a run (in a session of its own) and iteration of its own.
    private Task InsertToolExecutionsAsync(Guid agent, int count, string state)
        => db.ExecuteAsync("""
            WITH sessions AS (INSERT INTO {schema}.agentpg_sessions (metadata) SELECT '{}' FROM generate_series(1, $2) RETURNING id),
                 runs AS (INSERT INTO {schema}.agentpg_runs (session_id, agent_id, prompt, run_mode)
                          SELECT id, $1, 'go', 'streaming' FROM sessions RETURNING id),
                 iterations AS (INSERT INTO {schema}.agentpg_iterations (run_id, iteration_number) SELECT id, 1 FROM runs RETURNING id, run_id)
            INSERT INTO {schema}.agentpg_tool_executions (run_id, iteration_id, tool_use_id, tool_name, tool_input, state, completed_at)
            SELECT run_id, id, 'toolu_' || id, 'lookup', jsonb_build_object('query', repeat('x', 200)),
                   $3::text::{schema}.agentpg_tool_execution_state, CASE WHEN $3 = 'completed' THEN now() END
              FROM iterations
            """, agent, count, state);
}
