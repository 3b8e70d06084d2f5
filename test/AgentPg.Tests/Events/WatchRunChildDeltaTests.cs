using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

/// <summary>The deltas of a child run: the streaming instance looks the child's root up before it can tell whether the root is
/// watched, and an answer may be complete before that lookup returns.</summary>
public sealed class WatchRunChildDeltaTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [DatabaseFact]
    public async Task WatchRun_AChildRunAnswersAtOnce_ItsTextStillArrivesAsDeltasBeforeItsStoredMessage()
    {
        const string childAnswer = "Quick: eighteen degrees.";
        await using var h = await Harness.StartAsync(db);
        var watcher = await h.AddClientAsync(start: false);
        string root = "root_" + Guid.NewGuid().ToString("N")[..6], child = "child_" + Guid.NewGuid().ToString("N")[..6];
        var childAgent = await h.AgentAsync(a => a with { Name = child, SystemPrompt = child, Tools = [] });
        var rootAgent = await h.AgentAsync(a => a with { Name = root, SystemPrompt = root, Tools = [], AgentIds = [childAgent.Id] });
        var watching = new TaskCompletionSource();
        var rootStreamed = new TaskCompletionSource();
        h.Claude.Respond(async (r, cancellationToken) =>
        {
            if (r.SystemText == child)
            {
                // The root's text reached the watcher, so the streaming instance knows the root is watched; the child's answer
                // then comes in one piece, with no delay.
                await rootStreamed.Task.WaitAsync(cancellationToken);
                return FakeReply.Text(childAnswer);
            }

            if (r.ToolResults.Count > 0)
            {
                return FakeReply.Text("Done: " + r.ToolResults[0].Content);
            }

            // Streamed slowly once the watch is registered, so the streaming instance learns of it while the text streams.
            await watching.Task.WaitAsync(cancellationToken);
            return FakeReply.Message(FakeContentBlock.Text(string.Concat(Enumerable.Repeat("Asking the researcher, one moment please. ", 8))),
                    FakeContentBlock.ToolUse(child, new { task = "weather" }))
                with { StopReason = "tool_use", EventDelay = TimeSpan.FromMilliseconds(20) };
        });
        var session = await h.Client.NewSessionAsync();
        var rootId = await h.Client.RunFastAsync(session, rootAgent.Id, "weather?");

        var events = new List<RunEvent>();
        await Eventually.WithinAsync(Task.Run(async () =>
        {
            await foreach (var e in watcher.WatchRunAsync(rootId))
            {
                events.Add(e);
                watching.TrySetResult();
                if (e is TextDeltaEvent && e.RunId == rootId)
                {
                    rootStreamed.TrySetResult();
                }
            }
        }), "the watched run to finish", s_timeout);

        Assert.True(rootStreamed.Task.IsCompleted, "the root's first answer streamed as deltas");
        var childId = Assert.Single(events.OfType<ToolCallStartedEvent>()).ChildRunId!.Value;
        var childDeltas = events.OfType<TextDeltaEvent>().Where(d => d.RunId == childId).ToList();
        Assert.Equal(childAnswer, string.Concat(childDeltas.Select(d => d.Text)));
        var childAnswerStored = Assert.Single(events.OfType<MessageStoredEvent>(), m => m.RunId == childId && m.Message!.Role == MessageRole.Assistant);
        Assert.All(childDeltas, d => Assert.True(d.Sequence < childAnswerStored.Sequence, "the child's deltas precede its stored answer"));
        Assert.Equal("Done: " + childAnswer, Assert.IsType<RunFinishedEvent>(events[^1]).Response!.Text);
    }
}
