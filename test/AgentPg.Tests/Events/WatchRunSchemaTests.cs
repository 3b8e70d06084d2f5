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
}
