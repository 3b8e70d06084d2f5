using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Maintenance;

public sealed class RunEventRetentionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task WatchRunAsync_EventsDeletedByRetentionBeforeTheWatcherReadThem_EndsInsteadOfWaitingForever()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("done"));
        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"), "the run");
        // A first watcher records the finished run's events (its head and back-fill).
        await Eventually.WithinAsync(CollectAsync(h.Client.WatchRunAsync(response.RunId), CancellationToken.None), "the first watch");

        // The leader's retention pass deletes the events between a second watcher's registration (which finds the head) and
        // its first read: the read waits behind the table lock of the transaction that deletes them, then finds nothing.
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var retention = await connection.BeginTransactionAsync();
        await using (var lockEvents = connection.CreateCommand())
        {
            lockEvents.CommandText = $"LOCK TABLE \"{db.Schema}\".agentpg_run_events IN ACCESS EXCLUSIVE MODE";
            await lockEvents.ExecuteNonQueryAsync();
        }

        using var stop = new CancellationTokenSource();
        var watching = CollectAsync(h.Client.WatchRunAsync(response.RunId, cancellationToken: stop.Token), stop.Token);
        try
        {
            await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%agentpg_run_events%' AND pid <> $1",
                    connection.ProcessID) > 0,
                "the second watcher's read to wait for the retention's lock");
            await using (var delete = connection.CreateCommand())
            {
                delete.CommandText = $"DELETE FROM \"{db.Schema}\".agentpg_run_event_heads WHERE root_run_id = @root";
                delete.Parameters.AddWithValue("root", response.RunId);
                Assert.Equal(1, await delete.ExecuteNonQueryAsync());
            }

            await retention.CommitAsync();

            // Before the fix the watcher waited forever: its feed found no events and no finish, and the shared poll,
            // finding no head, woke it again and again.
            await Eventually.WithinAsync(watching, "the watch of a finished run whose events expired to end");
        }
        finally
        {
            await stop.CancelAsync();
        }
    }

    private static async Task<List<RunEvent>> CollectAsync(IAsyncEnumerable<RunEvent> events, CancellationToken cancellationToken)
    {
        var list = new List<RunEvent>();
        await foreach (var e in events.WithCancellation(cancellationToken))
        {
            list.Add(e);
        }

        return list;
    }
}
