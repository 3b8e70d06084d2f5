using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

public sealed class RunCreationTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task RunFastAsync_InTransactionRolledBack_LeavesNoRunAndNothingExecutes()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();

        await using var connection = await db.DataSource.OpenConnectionAsync();
        Guid runId;
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            runId = await h.Client.RunFastAsync(transaction, session, agent.Id, "never happens");
            await transaction.RollbackAsync();
        }

        var missing = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.GetRunAsync(runId));
        Assert.Equal(AgentPgErrorCode.RunNotFound, missing.Code);
        Assert.Empty(await h.Client.GetMessagesAsync(session));

        // A committed run after it is processed, and it is the only request Claude ever saw.
        h.Claude.Enqueue(FakeReply.Text("done"));
        var committed = await h.Client.RunFastSyncAsync(session, agent.Id, "second");
        Assert.Equal("done", committed.Text);
        Assert.Single(h.Claude.Requests, r => r.IsMessagesCall);
    }

    [DatabaseFact]
    public async Task RunFastAsync_InTransactionCommitted_IsProcessedTogetherWithTheBusinessData()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        await db.ExecuteAsync("CREATE TABLE IF NOT EXISTS {schema}.orders (id int PRIMARY KEY, note text)");
        h.Claude.Enqueue(FakeReply.Text("order summarized"));

        await using var connection = await db.DataSource.OpenConnectionAsync();
        Guid runId;
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await using (var insert = new Npgsql.NpgsqlCommand($"INSERT INTO \"{db.Schema}\".orders VALUES (7, 'big order')", connection, transaction))
            {
                await insert.ExecuteNonQueryAsync();
            }

            var session = await h.Client.NewSessionAsync(transaction);
            runId = await h.Client.RunFastAsync(transaction, session, agent.Id, "Summarize order 7");

            // Not visible to anyone before the commit, so nothing can start.
            Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = $1", runId));
            await transaction.CommitAsync();
        }

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the committed run to complete");
        Assert.Equal("order summarized", response.Text);
        Assert.Equal("big order", await db.ScalarAsync<string>("SELECT note FROM {schema}.orders WHERE id = 7"));
    }
}
