using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Events;

/// <summary>WatchRunAsync on a schema that is not there gives the guidance every other call gives
/// (<see cref="AgentPgErrorCode.SchemaVersionMismatch"/>), never a raw PostgreSQL error or an endless wait.</summary>
public sealed class WatchRunSchemaTests : ThrowawaySchemaTests
{
    [DatabaseFact]
    public async Task WatchRun_UnmigratedSchema_ThrowsSchemaVersionMismatchWithInstructions()
    {
        await using var client = Producer(NewSchema());

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () =>
        {
            await foreach (var _ in client.WatchRunAsync(Guid.NewGuid()))
            {
            }
        });

        Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
        Assert.Equal("WatchRun", ex.Operation);
        Assert.Contains("MigrateAsync", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task WatchRun_SchemaDroppedWhileWatching_EndsWithSchemaVersionMismatch()
    {
        var schema = NewSchema();
        await new AgentPgMigrator(DataSource, schema).MigrateAsync();
        await using var client = Producer(schema);
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "a", Model = "claude-sonnet-4-5" });
        // No worker: the run stays pending, and its watch waits for events.
        var runId = await client.RunFastAsync(await client.NewSessionAsync(), agent.Id, "hello");
        using var stop = new CancellationTokenSource();
        var events = client.WatchRunAsync(runId, 0, stop.Token).GetAsyncEnumerator();
        Task<bool>? waiting = null;
        try
        {
            Assert.True(await events.MoveNextAsync());
            Assert.IsType<RunStateChangedEvent>(events.Current);
            waiting = events.MoveNextAsync().AsTask();

            await ExecuteAsync($"DROP SCHEMA \"{schema}\" CASCADE");

            var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(waiting, "the watch to notice the dropped schema"));
            Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
            Assert.Equal("WatchRun", ex.Operation);
            Assert.IsType<PostgresException>(ex.InnerException);
        }
        finally
        {
            // A watch still waiting (the assertion failed) is stopped before its enumerator is disposed.
            await stop.CancelAsync();
            if (waiting is not null)
            {
                await Task.WhenAny(waiting);
            }

            await events.DisposeAsync();
        }

        Assert.Equal(0, client.ActiveEventFeeds);
    }

    [DatabaseFact]
    public async Task WatchRun_SchemaDroppedWhileAWatcherReadsWhatTheFeedDropped_EndsWithSchemaVersionMismatch()
    {
        // A watcher that resumes from an older sequence than the feed holds reads the events it misses from the database,
        // a page at a time, with the feed's own reader: a schema dropped between two pages ends it as it ends the feed's.
        var schema = NewSchema();
        await new AgentPgMigrator(DataSource, schema).MigrateAsync();
        await using var client = Producer(schema);
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "a", Model = "claude-sonnet-4-5" });
        var runId = await client.RunFastAsync(await client.NewSessionAsync(), agent.Id, "talk");
        using var stop = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        await using var first = client.WatchRunAsync(runId, 0, stop.Token).GetAsyncEnumerator();
        Assert.True(await first.MoveNextAsync());

        // No worker: the run is claimed by hand and its deltas appended as a streaming worker appends them.
        await ExecuteAsync($"UPDATE \"{schema}\".agentpg_runs SET state = 'streaming', claimed_by_instance_id = 'w', claim_epoch = 7, " +
                           $"current_iteration = 1 WHERE id = '{runId}'");
        const int deltas = 3 * 500;
        await ExecuteAsync($"SELECT \"{schema}\".agentpg_append_run_deltas('{runId}', 'w', 7, 1, " +
                           $"array_fill('text'::text, ARRAY[{deltas}]), array_fill(0, ARRAY[{deltas}]), " +
                           $"ARRAY(SELECT 'delta ' || n FROM generate_series(1, {deltas}) n))");
        var read = 0;
        while (read < deltas)
        {
            Assert.True(await first.MoveNextAsync());
            read += first.Current is TextDeltaEvent ? 1 : 0;
        }

        // The first watcher read them all: the feed keeps the last page only, so a watcher from the start reads the rest itself.
        Assert.True(client.RetainedEvents < deltas, $"the feed holds {client.RetainedEvents} events");
        await using var resumed = client.WatchRunAsync(runId, 0, stop.Token).GetAsyncEnumerator();
        Assert.True(await resumed.MoveNextAsync());
        await ExecuteAsync($"DROP SCHEMA \"{schema}\" CASCADE");

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () =>
        {
            while (await resumed.MoveNextAsync())
            {
            }
        });
        Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
        Assert.Equal("WatchRun", ex.Operation);
        Assert.Equal(runId, ex.RunId);
    }
}
