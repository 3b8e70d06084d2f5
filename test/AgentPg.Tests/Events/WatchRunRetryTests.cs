using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Events;

/// <summary>A model call whose stream fails mid-answer is retried in the same iteration: a watcher that received the failed
/// attempt's text must be told to drop it (an <see cref="IterationStartedEvent"/> repeating the number) before the next
/// attempt's text arrives.</summary>
public sealed class WatchRunRetryTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);
    private const string Partial = "The first attempt streams this sentence and then the connection to Claude breaks.";
    private const string Recovered = "The second attempt gives the whole answer.";

    // message_start, content_block_start and ping precede the text deltas (16 characters each).
    private const int BeforeText = 3;

    [DatabaseFact]
    public async Task WatchRun_StreamFailsMidAnswerAndIsRetried_TheWatcherIsToldToDropTheFailedAttemptsText()
        => await RetryAsync(holdTheFailedAttemptsWrite: false);

    [DatabaseFact]
    public async Task WatchRun_RetryStartsWhileTheFailedAttemptsDeltasAreStillBeingWritten_TheWatcherIsStillToldToDropThem()
        => await RetryAsync(holdTheFailedAttemptsWrite: true);

    /// <summary>With <paramref name="holdTheFailedAttemptsWrite"/>, the failed attempt's deltas are being written (held by a lock
    /// on the root's events head) when the retry begins, and written only once the retried request reached Claude.</summary>
    private async Task RetryAsync(bool holdTheFailedAttemptsWrite)
    {
        await using var h = await Harness.StartAsync(db);
        var watcher = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync();
        var workerKnowsTheWatch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var writeHeld = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstDeltaSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        NpgsqlConnection? lockConnection = null;
        NpgsqlTransaction? lockTransaction = null;
        var attempts = 0;
        Guid runId = default;
        h.Claude.Respond(async (_, cancellationToken) =>
        {
            if (Interlocked.Increment(ref attempts) == 1)
            {
                await workerKnowsTheWatch.Task.WaitAsync(cancellationToken);
                // The failed attempt's first text reached the watcher before the stream fails (or, held, is being written).
                var pause = firstDeltaSeen.Task;
                if (holdTheFailedAttemptsWrite)
                {
                    lockConnection = await db.DataSource.OpenConnectionAsync(cancellationToken);
                    lockTransaction = await lockConnection.BeginTransactionAsync(cancellationToken);
                    await using var command = new NpgsqlCommand(
                        $"SELECT 1 FROM {db.Schema}.agentpg_run_event_heads WHERE root_run_id = $1 FOR UPDATE", lockConnection, lockTransaction)
                    {
                        Parameters = { new NpgsqlParameter { Value = runId } },
                    };
                    await command.ExecuteScalarAsync(cancellationToken);
                    pause = writeHeld.Task;
                }

                // Two deltas, then (once they reached the watcher, or their write is held) two more, then an error event: the stream failed.
                return FakeReply.Text(Partial) with
                {
                    StreamPause = new FakeStreamPause(BeforeText + 2, pause), StreamFault = FakeStreamFault.Error(BeforeText + 4),
                };
            }

            if (lockTransaction is not null)
            {
                // The retry began: the held write of the failed attempt's deltas goes through now.
                await lockTransaction.RollbackAsync(cancellationToken);
                await lockConnection!.DisposeAsync();
            }

            return FakeReply.Text(Recovered) with { EventDelay = TimeSpan.FromMilliseconds(5) };
        });
        var session = await watcher.NewSessionAsync();
        runId = await watcher.RunFastAsync(session, agent.Id, "Tell me.");

        var events = new List<RunEvent>();
        var watch = Task.Run(async () =>
        {
            await foreach (var e in watcher.WatchRunAsync(runId))
            {
                events.Add(e);
                if (!workerKnowsTheWatch.Task.IsCompleted)
                {
                    await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the worker learns of the watch", s_timeout);
                    workerKnowsTheWatch.SetResult();
                }

                if (e is TextDeltaEvent)
                {
                    firstDeltaSeen.TrySetResult();
                }
            }
        });
        if (holdTheFailedAttemptsWrite)
        {
            await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%agentpg_append_run_deltas%' AND strpos(query, $1) > 0",
                db.Schema) > 0, "the failed attempt's deltas wait for the events head", s_timeout);
            writeHeld.SetResult();
        }

        await Eventually.WithinAsync(watch, "the watched run to finish", s_timeout);

        Assert.Equal(2, attempts);
        Assert.Equal(Recovered, Assert.IsType<RunFinishedEvent>(events[^1]).Response!.Text);
        // What a consumer following the documented rule shows: an IterationStartedEvent repeating a number drops that
        // iteration's text received so far.
        var shown = new System.Text.StringBuilder();
        var seen = new HashSet<int>();
        foreach (var e in events)
        {
            if (e is IterationStartedEvent iteration && !seen.Add(iteration.IterationNumber))
            {
                shown.Clear();
            }
            else if (e is TextDeltaEvent delta)
            {
                shown.Append(delta.Text);
            }
        }

        Assert.StartsWith(Partial[..32], string.Concat(events.OfType<TextDeltaEvent>().Select(d => d.Text)), StringComparison.Ordinal);
        Assert.Equal(Recovered, shown.ToString());
        Assert.Equal([1, 1], events.OfType<IterationStartedEvent>().Select(i => i.IterationNumber));
    }
}
