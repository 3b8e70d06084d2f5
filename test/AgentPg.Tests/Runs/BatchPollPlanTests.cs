using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Runs;

/// <summary>The batch poller's query of iterations to poll reads the iterations it returns, whatever the statistics of the
/// run table say (<see cref="ClaimPlanTests"/> for the run claim).</summary>
public sealed class BatchPollPlanTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const int History = 3_000;
    private const int Batches = 3_000;
    private const int PollSize = 10;

    [DatabaseFact]
    public async Task Poll_BatchesAfterStatisticsSaidBatchRunsWereRare_ReadsThePolledIterationsNotEveryRun()
    {
        // An application's history: many finished batch runs, analyzed. A burst then submits batches, and autovacuum
        // analyzes the iterations before the runs. Told that in-progress batches are many and runs waiting for one few,
        // the planner used to scan every run (no index names a run's state) and probe each one's iterations, on every poll.
        var agent = await db.Seed.AgentAsync();
        await InsertBatchRunsAsync(agent, History, "ended");
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET state = 'completed', started_at = now() WHERE agent_id = $1", agent);
        await db.ExecuteAsync("ANALYZE {schema}.agentpg_runs, {schema}.agentpg_iterations");
        await InsertBatchRunsAsync(agent, Batches, "in_progress");
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET state = 'batch_pending', started_at = now() WHERE agent_id = $1 AND state = 'pending'", agent);
        await db.ExecuteAsync("ANALYZE {schema}.agentpg_iterations");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        // The first poll of the connection also reads the catalogs to plan; the second is the poll itself.
        Assert.Equal(PollSize, (await PollAsync(connection)).Rows);
        var (rows, pages) = await PollAsync(connection);
        Assert.Equal(PollSize, rows);
        // Ten iterations and their runs: a few dozen pages; every run is thousands.
        Assert.True(pages < 200, $"a poll of {PollSize} iterations read {pages} pages");

        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET state = 'completed' WHERE agent_id = $1 AND state = 'batch_pending'", agent);
    }

    // Runs the poll under EXPLAIN ANALYZE: the rows it returned and the pages it read.
    private Task<(int Rows, long Pages)> PollAsync(NpgsqlConnection connection)
        => Explained.RunAsync(connection,
            $"SELECT id FROM \"{db.Schema}\".agentpg_get_iterations_for_poll('plan-test', interval '1 minute', {PollSize})");

    // Batch runs, each in a session of its own, with a first iteration whose batch is in the given status.
    private Task InsertBatchRunsAsync(Guid agent, int count, string batchStatus)
        => db.ExecuteAsync("""
            WITH sessions AS (INSERT INTO {schema}.agentpg_sessions (metadata) SELECT '{}' FROM generate_series(1, $2) RETURNING id),
                 runs AS (INSERT INTO {schema}.agentpg_runs (session_id, agent_id, prompt, run_mode)
                          SELECT id, $1, 'go', 'batch' FROM sessions RETURNING id)
            INSERT INTO {schema}.agentpg_iterations (run_id, iteration_number, batch_id, batch_status, batch_submitted_at)
            SELECT id, 1, 'msgbatch_' || id, $3::text::{schema}.agentpg_batch_status, now() FROM runs
            """, agent, count, batchStatus);
}
