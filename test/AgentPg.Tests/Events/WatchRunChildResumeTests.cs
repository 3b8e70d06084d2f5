using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

/// <summary>Resuming the watch of a child run after its finish was delivered, while its root run goes on: the watch ends at once,
/// as it does for a root run (it used to wait for the root run's finish, possibly for weeks).</summary>
public sealed class WatchRunChildResumeTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    [DatabaseFact]
    public async Task WatchRun_ChildRunResumedAtOrAfterItsFinish_EndsAtOnceWhileTheRootRunGoesOn()
    {
        await using var h = await Harness.StartAsync(db);
        var watcher = await h.AddClientAsync(start: false);
        string root = "root_" + Guid.NewGuid().ToString("N")[..6], child = "child_" + Guid.NewGuid().ToString("N")[..6];
        var childAgent = await h.AgentAsync(a => a with { Name = child, SystemPrompt = child, Tools = [] });
        var rootAgent = await h.AgentAsync(a => a with { Name = root, SystemPrompt = root, Tools = [], AgentIds = [childAgent.Id] });
        var rootGoesOn = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(async (r, cancellationToken) =>
        {
            if (r.SystemText == child)
            {
                return FakeReply.Text("Eighteen degrees.");
            }

            if (r.ToolResults.Count > 0)
            {
                // The root run is still running (its last model call is held) while the child's watch is resumed.
                await rootGoesOn.Task.WaitAsync(cancellationToken);
                return FakeReply.Text("Done: " + r.ToolResults[0].Content);
            }

            return FakeReply.ToolUse(child, new { task = "weather" });
        });
        var session = await h.Client.NewSessionAsync();
        var rootId = await h.Client.RunFastAsync(session, rootAgent.Id, "weather?");
        var childId = await Eventually.WithinAsync(ChildRunAsync(h.Client, rootId), "the child run");

        var childEvents = await Eventually.WithinAsync(CollectAsync(watcher.WatchRunAsync(childId)), "the child's watch to end with its finish");
        var finish = Assert.IsType<RunFinishedEvent>(childEvents[^1]);
        Assert.Equal(childId, finish.RunId);
        Assert.False((await h.Client.GetRunAsync(rootId)).State.IsTerminal(), "the root run goes on");

        Assert.Empty(await Eventually.WithinAsync(CollectAsync(watcher.WatchRunAsync(childId, finish.Sequence)),
            "the watch of the child run resumed after its finish to end", s_timeout));
        var rootEvents = await Eventually.WithinAsync(TakeUntilAsync(watcher.WatchRunAsync(rootId), e => e is RunFinishedEvent f && f.RunId == childId),
            "the root's watch to reach the child's finish");
        Assert.Empty(await Eventually.WithinAsync(CollectAsync(watcher.WatchRunAsync(childId, rootEvents[^1].Sequence + 1)),
            "the watch of the child run resumed after a later sequence to end", s_timeout));
        Assert.Equal([finish], (await Eventually.WithinAsync(CollectAsync(watcher.WatchRunAsync(childId, finish.Sequence - 1)),
            "the watch of the child run resumed just before its finish to end", s_timeout)).Select(e => (RunEvent)e).ToList(), RunEventSequence.Instance);

        rootGoesOn.SetResult();
        var rest = await Eventually.WithinAsync(CollectAsync(watcher.WatchRunAsync(rootId, rootEvents[^1].Sequence)), "the root run to finish");
        Assert.Equal(rootId, Assert.IsType<RunFinishedEvent>(rest[^1]).RunId);
    }

    private static async Task<Guid> ChildRunAsync(AgentPgClient client, Guid rootId)
    {
        await foreach (var e in client.WatchRunAsync(rootId))
        {
            if (e is ToolCallStartedEvent { ChildRunId: { } childId })
            {
                return childId;
            }
        }

        throw new InvalidOperationException("The root run finished without starting its child run.");
    }

    private static async Task<List<RunEvent>> CollectAsync(IAsyncEnumerable<RunEvent> events)
    {
        var list = new List<RunEvent>();
        await foreach (var e in events)
        {
            list.Add(e);
        }

        return list;
    }

    private static async Task<List<RunEvent>> TakeUntilAsync(IAsyncEnumerable<RunEvent> events, Func<RunEvent, bool> last)
    {
        var list = new List<RunEvent>();
        await foreach (var e in events)
        {
            list.Add(e);
            if (last(e))
            {
                break;
            }
        }

        return list;
    }

    private sealed class RunEventSequence : IEqualityComparer<RunEvent>
    {
        public static readonly RunEventSequence Instance = new();

        public bool Equals(RunEvent? x, RunEvent? y) => x is not null && y is not null && x.GetType() == y.GetType() && x.Sequence == y.Sequence && x.RunId == y.RunId;

        public int GetHashCode(RunEvent obj) => obj.Sequence.GetHashCode();
    }
}
