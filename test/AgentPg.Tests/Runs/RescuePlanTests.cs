using AgentPg.Storage;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Runs;

/// <summary>The leader's rescue round reads the claimed work, not every run, whatever the statistics of the run table say
/// (<see cref="ClaimPlanTests"/> for the run claim).</summary>
public sealed class RescuePlanTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const int History = 20_000;
    private const int Backlog = 3_000;

    [DatabaseFact]
    public async Task Rescue_BacklogAfterStatisticsSaidClaimedRunsWereRare_DoesNotReadEveryRun()
    {
        // An application's history: many finished runs, the run table analyzed while none was claimed. A burst then queues
        // a backlog and autovacuum analyzes the queue. Looking for the holders of claimed runs, the rescue used to scan every
        // run of the table into a hash (the run table has no index naming a holder), on every round.
        var agent = await db.Seed.AgentAsync();
        await db.Seed.BacklogAfterHistoryAsync(agent, History, Backlog);
        var runPages = await db.ScalarAsync<long>("SELECT pg_relation_size('{schema}.agentpg_runs') / current_setting('block_size')::bigint");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        // The first round of the connection also reads the catalogs to plan; the second is the round itself.
        await RescueAsync(connection);
        var pages = await RescueAsync(connection);
        // Three reads of the queue (holders, stalled runs, the pending_tools sweep), a few hundred pages each here.
        Assert.True(pages < runPages, $"a rescue round read {pages} pages; the run table has {runPages}");
        await transaction.RollbackAsync();

        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET state = 'cancelled' WHERE agent_id = $1 AND state = 'pending'", agent);
    }

    [DatabaseFact]
    public async Task Instances_BacklogAfterStatisticsSaidClaimedRunsWereRare_DoNotReadEveryRunPerInstance()
    {
        // The same statistics, read by the in-flight count of the instance list (ListInstancesAsync, the admin UI): it used
        // to hash every run of the table once per instance.
        var agent = await db.Seed.AgentAsync();
        await db.Seed.BacklogAfterHistoryAsync(agent, History, Backlog);
        foreach (var instance in new[] { "plan-a", "plan-b", "plan-c" })
        {
            await db.Seed.InstanceAsync(instance, TimeSpan.Zero);
        }

        var runPages = await db.ScalarAsync<long>("SELECT pg_relation_size('{schema}.agentpg_runs') / current_setting('block_size')::bigint");
        var sql = new QuerySql(new SchemaName(db.Schema)).Instances;
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await ExplainAsync(connection, sql);
        var pages = await ExplainAsync(connection, sql);
        // The queue once per instance, a few hundred pages each here.
        Assert.True(pages < runPages, $"listing three instances read {pages} pages; the run table has {runPages}");

        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET state = 'cancelled' WHERE agent_id = $1 AND state = 'pending'", agent);
    }

    private static async Task<long> ExplainAsync(NpgsqlConnection connection, string sql) => (await Explained.RunAsync(connection, sql)).Pages;

    // Runs a rescue round under EXPLAIN ANALYZE: the pages it read (the function's statements included).
    private Task<long> RescueAsync(NpgsqlConnection connection)
        => ExplainAsync(connection, $"SELECT * FROM \"{db.Schema}\".agentpg_rescue(interval '1 minute', interval '5 minutes', 3, 'plan-test')");

}
