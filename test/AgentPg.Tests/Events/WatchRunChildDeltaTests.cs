using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Events;

/// <summary>The deltas of a child run: the streaming instance looks the child's root up before it can tell whether the root is
/// watched, and an answer may be complete before that lookup returns. The test holds the lookup (an exclusive lock on the runs
/// table, taken when the child's model request arrives) until either the child's result is being recorded (the bug: the
/// answer's deltas were given up) or the stream reported that it waits for the lookup (the fix).</summary>
public sealed class WatchRunChildDeltaTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [DatabaseFact]
    public async Task WatchRun_AChildRunAnswersAtOnce_ItsTextStillArrivesAsDeltasBeforeItsStoredMessage()
    {
        const string childAnswer = "Quick: eighteen degrees.";
        var logs = new LogCapture();
        await using var h = await Harness.StartAsync(db, o => o.LoggerFactory = logs);
        var watcher = await h.AddClientAsync(start: false);
        string root = "root_" + Guid.NewGuid().ToString("N")[..6], child = "child_" + Guid.NewGuid().ToString("N")[..6];
        var childAgent = await h.AgentAsync(a => a with { Name = child, SystemPrompt = child, Tools = [] });
        var rootAgent = await h.AgentAsync(a => a with { Name = root, SystemPrompt = root, Tools = [], AgentIds = [childAgent.Id] });
        var watching = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var rootStreamed = new TaskCompletionSource();
        var locked = new TaskCompletionSource<(NpgsqlConnection, NpgsqlTransaction)>();
        h.Claude.Respond(async (r, cancellationToken) =>
        {
            if (r.SystemText == child)
            {
                // The root's text reached the watcher, so the streaming instance knows the root is watched; the child's answer
                // then comes at once, while its root cannot be looked up.
                await rootStreamed.Task.WaitAsync(cancellationToken);
                var connection = await db.DataSource.OpenConnectionAsync(cancellationToken);
                var transaction = await connection.BeginTransactionAsync(cancellationToken);
                await using (var command = new NpgsqlCommand($"LOCK TABLE {db.Schema}.agentpg_runs IN ACCESS EXCLUSIVE MODE", connection, transaction))
                {
                    await command.ExecuteNonQueryAsync(cancellationToken);
                }

                locked.TrySetResult((connection, transaction));
                return FakeReply.Text(childAnswer);
            }

            if (r.ToolResults.Count > 0)
            {
                return FakeReply.Text("Done: " + r.ToolResults[0].Content);
            }

            // Streamed once the streaming instance knows of the watch, so the root's text arrives as deltas.
            await watching.Task.WaitAsync(cancellationToken);
            return FakeReply.Message(FakeContentBlock.Text(string.Concat(Enumerable.Repeat("Asking the researcher, one moment please. ", 8))),
                    FakeContentBlock.ToolUse(child, new { task = "weather" }))
                with { StopReason = "tool_use", EventDelay = TimeSpan.FromMilliseconds(20) };
        });
        var session = await h.Client.NewSessionAsync();
        var rootId = await h.Client.RunFastAsync(session, rootAgent.Id, "weather?");

        var events = new List<RunEvent>();
        var watch = Task.Run(async () =>
        {
            await foreach (var e in watcher.WatchRunAsync(rootId))
            {
                events.Add(e);
                if (!watching.Task.IsCompleted)
                {
                    // The first event shows the watch registered; the streaming instance learns of it a moment later (an answer
                    // streamed before that would have no deltas, and the child's request would wait for them forever).
                    await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(rootId), "the streaming instance learns of the watch", s_timeout);
                    watching.SetResult();
                }

                if (e is TextDeltaEvent && e.RunId == rootId)
                {
                    rootStreamed.TrySetResult();
                }
            }
        });

        var (lockConnection, lockTransaction) = await Eventually.WithinAsync(locked.Task, "the child's model request", s_timeout);
        await using (lockConnection)
        {
            await Eventually.TrueAsync(async () => logs.WithEventId(8004).Count > 0 || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%FOR NO KEY UPDATE%' AND strpos(query, $1) > 0",
                db.Schema) > 0,
                "the child's answer is complete: it waits for its root's lookup, or its result is being recorded", s_timeout);
            await lockTransaction.RollbackAsync();
        }

        await Eventually.WithinAsync(watch, "the watched run to finish", s_timeout);

        Assert.True(rootStreamed.Task.IsCompleted, "the root's first answer streamed as deltas");
        var childId = Assert.Single(events.OfType<ToolCallStartedEvent>()).ChildRunId!.Value;
        var childDeltas = events.OfType<TextDeltaEvent>().Where(d => d.RunId == childId).ToList();
        Assert.Equal(childAnswer, string.Concat(childDeltas.Select(d => d.Text)));
        var childAnswerStored = Assert.Single(events.OfType<MessageStoredEvent>(), m => m.RunId == childId && m.Message!.Role == MessageRole.Assistant);
        Assert.All(childDeltas, d => Assert.True(d.Sequence < childAnswerStored.Sequence, "the child's deltas precede its stored answer"));
        Assert.Equal("Done: " + childAnswer, Assert.IsType<RunFinishedEvent>(events[^1]).Response!.Text);
    }
}
