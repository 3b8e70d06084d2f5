using System.Threading.Channels;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Events;

/// <summary>The feeds' fallback for a lost agentpg_run_event notification is one statement per poll interval for all the
/// watched root runs of a client, and a page read only for a feed that is behind, not a page read per feed per interval.</summary>
public sealed class WatchRunPollTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const int Watched = 50;

    [DatabaseFact]
    public async Task ManyQuietFeeds_ShareOnePollPerInterval_AndAnEventWithoutItsNotificationStillArrives()
    {
        // Nothing processes the runs, so their feeds stay quiet after the back-filled events.
        var (producer, runs) = await db.PendingRunsAsync(Watched);
        await using var producerLifetime = producer;

        using var stop = new CancellationTokenSource();
        var received = runs.Select(_ => Channel.CreateUnbounded<RunEvent>()).ToList();
        var watchers = runs.Select((run, i) => Task.Run(async () =>
        {
            await foreach (var e in producer.WatchRunAsync(run, cancellationToken: stop.Token))
            {
                received[i].Writer.TryWrite(e);
            }
        })).ToList();
        // Every feed has read its back-filled events.
        foreach (var channel in received)
        {
            await Eventually.WithinAsync(channel.Reader.ReadAsync().AsTask(), "every watcher's first event");
        }

        Assert.Equal(Watched, producer.ActiveEventFeeds);
        using var statements = new TracedStatements(db.Schema);
        int Polls() => statements.Count("agentpg_run_event_heads WHERE root_run_id = ANY");
        int PageReads() => statements.Count("agentpg_run_events e");
        await Eventually.TrueAsync(() => Polls() >= 20 || PageReads() > 3 * Watched, "twenty shared polls");
        // No feed had anything new to read: a page read per feed per interval would be ~1 000 by now. At most one each is
        // allowed, for the notification of the feed's back-fill, which the listener can deliver after the feed's first read.
        var pageReads = PageReads();
        Assert.True(pageReads <= Watched, $"{pageReads} page reads by {Watched} quiet feeds ({Polls()} shared polls)");
        Assert.True(Polls() >= 20, $"{Polls()} shared polls");

        // An event appended with no notification (as one sent while the listener reconnects would be lost): the shared poll
        // finds the feed behind, and its watcher gets the event.
        long sequence;
        await using (var connection = await db.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await using (var head = new NpgsqlCommand(
                $"UPDATE \"{db.Schema}\".agentpg_run_event_heads SET last_sequence = last_sequence + 1 WHERE root_run_id = $1 RETURNING last_sequence",
                connection, transaction))
            {
                head.Parameters.Add(new NpgsqlParameter { Value = runs[0] });
                sequence = (long)(await head.ExecuteScalarAsync())!;
            }

            await using (var append = new NpgsqlCommand(
                $"INSERT INTO \"{db.Schema}\".agentpg_run_events (root_run_id, sequence, run_id, kind, data) VALUES ($1, $2, $1, 'state', $3::jsonb)",
                connection, transaction))
            {
                append.Parameters.Add(new NpgsqlParameter { Value = runs[0] });
                append.Parameters.Add(new NpgsqlParameter { Value = sequence });
                append.Parameters.Add(new NpgsqlParameter { Value = "{\"state\": \"pending\", \"previous_state\": \"pending\"}" });
                await append.ExecuteNonQueryAsync();
            }

            await transaction.CommitAsync();
        }

        var late = await Eventually.WithinAsync(received[0].Reader.ReadAsync().AsTask(), "the event appended without a notification");
        Assert.Equal(sequence, late.Sequence);
        Assert.Equal(RunState.Pending, Assert.IsType<RunStateChangedEvent>(late).State);
        Assert.All(received.Skip(1), channel => Assert.False(channel.Reader.TryRead(out _)));

        await stop.CancelAsync();
        foreach (var watcher in watchers)
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => watcher);
        }

        await Eventually.TrueAsync(() => producer.ActiveEventFeeds == 0, "every feed released");
    }
}
