using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Events;

/// <summary>An event of a kind this version does not know (written by a newer version during a rolling upgrade) is skipped, and
/// the feed reads past it: it used to stay behind it, so the shared poll found the feed behind at every interval and its page
/// was read again and again for as long as the run was watched.</summary>
public sealed class WatchRunUnknownKindTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task EventOfAnUnknownKind_IsSkippedOnce_AndTheFeedIsNotReadAgainAtEveryPoll()
    {
        // Nothing processes the run, so its feed stays quiet after the back-filled events.
        var (producer, runs) = await db.PendingRunsAsync(1);
        await using var producerLifetime = producer;
        var run = runs[0];
        using var stop = new CancellationTokenSource();
        var received = System.Threading.Channels.Channel.CreateUnbounded<RunEvent>();
        var watcher = Task.Run(async () =>
        {
            await foreach (var e in producer.WatchRunAsync(run, cancellationToken: stop.Token))
            {
                received.Writer.TryWrite(e);
            }
        });
        await Eventually.WithinAsync(received.Reader.ReadAsync().AsTask(), "the back-filled event");

        using var statements = new TracedStatements(db.Schema);
        int Polls() => statements.Count("agentpg_run_event_heads WHERE root_run_id = ANY");
        int PageReads() => statements.Count("agentpg_run_events e");
        var unknown = await AppendAsync(run, "from_a_newer_version", "{}");
        await Eventually.TrueAsync(() => PageReads() >= 1, "the feed reads the page with the unknown event");
        var pollsThen = Polls();
        await Eventually.TrueAsync(() => Polls() >= pollsThen + 10 || PageReads() > 5, "ten more shared polls");
        Assert.True(PageReads() <= 2, $"{PageReads()} page reads for one unknown event ({Polls() - pollsThen} polls since)");

        // The next known event arrives, and nothing was delivered for the unknown one.
        var next = await AppendAsync(run, "state", "{\"state\": \"pending\", \"previous_state\": \"pending\"}");
        var late = await Eventually.WithinAsync(received.Reader.ReadAsync().AsTask(), "the event after the unknown one");
        Assert.Equal(next, late.Sequence);
        Assert.True(late.Sequence > unknown);

        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => watcher);
    }

    /// <summary>Appends an event as the triggers do, without its notification (the shared poll finds it).</summary>
    private async Task<long> AppendAsync(Guid run, string kind, string data)
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        long sequence;
        await using (var head = new NpgsqlCommand(
            $"UPDATE \"{db.Schema}\".agentpg_run_event_heads SET last_sequence = last_sequence + 1 WHERE root_run_id = $1 RETURNING last_sequence",
            connection, transaction))
        {
            head.Parameters.Add(new NpgsqlParameter { Value = run });
            sequence = (long)(await head.ExecuteScalarAsync())!;
        }

        await using (var append = new NpgsqlCommand(
            $"INSERT INTO \"{db.Schema}\".agentpg_run_events (root_run_id, sequence, run_id, kind, data) VALUES ($1, $2, $1, $3, $4::jsonb)",
            connection, transaction))
        {
            append.Parameters.Add(new NpgsqlParameter { Value = run });
            append.Parameters.Add(new NpgsqlParameter { Value = sequence });
            append.Parameters.Add(new NpgsqlParameter { Value = kind });
            append.Parameters.Add(new NpgsqlParameter { Value = data });
            await append.ExecuteNonQueryAsync();
        }

        await transaction.CommitAsync();
        return sequence;
    }
}
