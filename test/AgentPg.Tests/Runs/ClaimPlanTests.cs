using System.Text.Json;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Runs;

/// <summary>The claim's plan does not depend on the size the run queue had when a connection planned it: the queue is
/// small in steady state, and a backlog builds up faster than autovacuum analyzes it again.</summary>
public sealed class ClaimPlanTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const int Backlog = 3_000;
    private const int ClaimSize = 32;

    [DatabaseFact]
    public async Task Claim_BacklogWhileThePlannerPrefersAnotherPathThanTheClaimIndex_ReadsTheClaimedRunsNotTheWholeBacklog()
    {
        var agent = await db.Seed.AgentAsync();
        await InsertPendingRunsAsync(agent, Backlog);
        var oldest = await db.ScalarAsync<Guid>("SELECT run_id FROM {schema}.agentpg_run_queue WHERE state = 'pending' ORDER BY seq LIMIT 1");

        // What statistics of a small queue do to a cached plan (the benchmark's drain: a bitmap scan of 21 685 pending runs,
        // sorted, then limited, 108 ms per claim), done here deterministically: the session turns the ordered index scan off.
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using (var prefer = new NpgsqlCommand("SET enable_indexscan = off", connection))
        {
            await prefer.ExecuteNonQueryAsync();
        }

        await using var transaction = await connection.BeginTransactionAsync();
        var (rows, pages) = await ClaimAsync(connection);
        Assert.Equal(ClaimSize, rows);
        // Claiming 32 runs (updates, prompts, iterations) reads about 3 000 pages; a plan that sorts the backlog reads every
        // pending run's queue row, run row and agent besides.
        Assert.True(pages < 7_000, $"a claim of {ClaimSize} runs read {pages} pages");
        await using var first = new NpgsqlCommand(
            $"SELECT id FROM \"{db.Schema}\".agentpg_runs WHERE state = 'streaming' ORDER BY seq LIMIT 1", connection);
        Assert.Equal(oldest, (Guid)(await first.ExecuteScalarAsync())!);
    }

    // Runs the claim under EXPLAIN ANALYZE: the rows it claimed and the pages it read.
    private async Task<(int Rows, long Pages)> ClaimAsync(NpgsqlConnection connection)
    {
        await using var command = new NpgsqlCommand(
            $"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) SELECT id FROM \"{db.Schema}\".agentpg_claim_runs('plan-test', {ClaimSize}, 'streaming')",
            connection);
        using var plan = JsonDocument.Parse((string)(await command.ExecuteScalarAsync())!);
        var top = plan.RootElement[0].GetProperty("Plan");
        return (top.GetProperty("Actual Rows").GetInt32(),
            top.GetProperty("Shared Hit Blocks").GetInt64() + top.GetProperty("Shared Read Blocks").GetInt64());
    }

    // Pending runs, each in a session of its own.
    private Task InsertPendingRunsAsync(Guid agent, int count)
        => db.ExecuteAsync("""
            WITH sessions AS (INSERT INTO {schema}.agentpg_sessions (metadata) SELECT '{}' FROM generate_series(1, $2) RETURNING id)
            INSERT INTO {schema}.agentpg_runs (session_id, agent_id, prompt, run_mode) SELECT id, $1, 'go', 'streaming' FROM sessions
            """, agent, count);
}
