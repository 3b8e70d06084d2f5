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
        await db.Seed.PendingRunsAsync(agent, Backlog);
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

    [DatabaseFact]
    public async Task Claim_BacklogAfterStatisticsSaidPendingRunsWereRare_ProbesTheClaimedRunsByIdNotEveryRunOfTheAgent()
    {
        // An application's history: many finished runs of one agent, the run table analyzed while none was pending. A burst
        // then queues a backlog, and autovacuum analyzes the queue (a small table, so first) before the run table again. Told
        // that the queue is long and the agent's pending runs are few, the planner used to read every run of the agent
        // (agentpg_idx_runs_agent) into a Materialize and join each queued run against it, on every claim (the benchmark's
        // drain: 21 ms per claim of ten runs with 11 000 pending, against 0.4 ms).
        var agent = await db.Seed.AgentAsync();
        await db.Seed.BacklogAfterHistoryAsync(agent, history: Backlog, backlog: Backlog);
        var oldest = await db.ScalarAsync<Guid>("SELECT run_id FROM {schema}.agentpg_run_queue WHERE state = 'pending' ORDER BY seq LIMIT 1");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        // The first claim of the connection also reads the catalogs to plan; the second is the claim itself.
        Assert.Equal(1, (await ClaimAsync(connection, count: 1)).Rows);
        var (rows, pages) = await ClaimAsync(connection, count: 1);
        Assert.Equal(1, rows);
        // One run: its queue row, run row, agent, prompt and iteration, about a hundred pages; the agent's runs are hundreds more.
        Assert.True(pages < 200, $"a claim of one run read {pages} pages");
        await using var first = new NpgsqlCommand(
            $"SELECT id FROM \"{db.Schema}\".agentpg_runs WHERE state = 'streaming' ORDER BY seq LIMIT 1", connection);
        Assert.Equal(oldest, (Guid)(await first.ExecuteScalarAsync())!);
    }

    // Runs the claim under EXPLAIN ANALYZE: the rows it claimed and the pages it read.
    private Task<(int Rows, long Pages)> ClaimAsync(NpgsqlConnection connection, int count = ClaimSize)
        => Explained.RunAsync(connection, $"SELECT id FROM \"{db.Schema}\".agentpg_claim_runs('plan-test', {count}, 'streaming')");

}
