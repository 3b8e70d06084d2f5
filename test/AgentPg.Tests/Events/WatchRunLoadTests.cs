using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

public sealed class WatchRunLoadTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static async Task<List<RunEvent>> CollectAsync(IAsyncEnumerable<RunEvent> events, TaskCompletionSource? firstEvent = null)
    {
        var list = new List<RunEvent>();
        await foreach (var e in events)
        {
            list.Add(e);
            firstEvent?.TrySetResult();
        }

        return list;
    }

    [DatabaseFact]
    public async Task WatchRun_200WatchersOfOneRun_AllCompleteSharingOneFeed()
    {
        var answer = string.Concat(Enumerable.Range(0, 40).Select(i => $"sentence {i} of a long answer. "));
        // 200 watchers at once: a pool of their own, disposed after the harness (the test classes running beside this one share
        // the other).
        await using var watcherPool = TestDatabase.CreateDataSource();
        await using var h = await Harness.StartAsync(db);
        var watcher = await h.AddClientAsync(watcherPool, start: false);
        var agent = await h.AgentAsync();
        var release = new TaskCompletionSource();
        h.Claude.Respond(async (_, ct) =>
        {
            await release.Task.WaitAsync(ct);
            return FakeReply.Text(answer) with { EventDelay = TimeSpan.FromMilliseconds(3) };
        });
        var runId = await watcher.RunFastAsync(await watcher.NewSessionAsync(), agent.Id, "talk");

        var firstEvents = Enumerable.Range(0, 200).Select(_ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).ToList();
        var watchers = firstEvents.Select(first => Task.Run(() => CollectAsync(watcher.WatchRunAsync(runId), first))).ToList();
        // Every watcher holds the feed before the run can finish: one that joined after the others had finished and
        // released it would start a new feed and materialize the events again.
        await Eventually.WithinAsync(Task.WhenAll(firstEvents.Select(f => f.Task)), "every watcher to receive its first event", TimeSpan.FromSeconds(60));
        // One reader per root run, however many watch it.
        Assert.Equal(1, watcher.ActiveEventFeeds);
        // The answer streams once the worker knows of the watch (it learns of it a moment after the first watcher registered),
        // so all of its text arrives as deltas.
        await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the worker learns of the watch");
        release.SetResult();
        var results = await Eventually.WithinAsync(Task.WhenAll(watchers), "every watcher to finish", TimeSpan.FromSeconds(60));

        var reference = results[0];
        var finished = Assert.IsType<RunFinishedEvent>(reference[^1]);
        Assert.Equal(answer, finished.Response!.Text);
        Assert.Equal(answer, string.Concat(reference.OfType<TextDeltaEvent>().Select(d => d.Text)));
        foreach (var events in results)
        {
            Assert.Equal(reference.Select(e => e.Sequence), events.Select(e => e.Sequence));
            // The events are materialized once and shared: memory grows with the run, not with the number of watchers.
            Assert.All(events.Zip(reference), p => Assert.Same(p.Second, p.First));
        }

        Assert.Equal(0, watcher.ActiveEventFeeds);
    }

    [DatabaseFact]
    public async Task WatchRun_200RunsWatchedAtOnce_EveryWatcherGetsItsRunToTheFinish()
    {
        // 200 watchers at once: a pool of their own, disposed after the harness (the test classes running beside this one share
        // the other).
        await using var watcherPool = TestDatabase.CreateDataSource();
        await using var h = await Harness.StartAsync(db, o => o.MaxConcurrentStreamingRuns = 50);
        var watcher = await h.AddClientAsync(watcherPool, start: false);
        var agent = await h.AgentAsync();
        h.Claude.Respond(request => FakeReply.Text("answer to " + request.LastUserText + ", streamed in pieces") with { EventDelay = TimeSpan.FromMilliseconds(2) });

        var runs = new List<Guid>();
        for (var i = 0; i < 200; i++)
        {
            runs.Add(await watcher.RunFastAsync(await watcher.NewSessionAsync(), agent.Id, "question " + i));
        }

        var watchers = runs.Select(runId => Task.Run(() => CollectAsync(watcher.WatchRunAsync(runId)))).ToList();
        var results = await Eventually.WithinAsync(Task.WhenAll(watchers), "every watcher to finish", TimeSpan.FromSeconds(120));

        for (var i = 0; i < runs.Count; i++)
        {
            var events = results[i];
            Assert.All(events, e => Assert.Equal(runs[i], e.RunId));
            var finished = Assert.IsType<RunFinishedEvent>(events[^1]);
            Assert.Equal($"answer to question {i}, streamed in pieces", finished.Response!.Text);
            var stored = events.OfType<MessageStoredEvent>().Select(m => m.Message!.Content[0].Text).ToList();
            Assert.Equal(["question " + i, finished.Response.Text], stored);
            Assert.All(events.Zip(events.Skip(1)), p => Assert.True(p.First.Sequence < p.Second.Sequence));
        }

        Assert.Equal(0, watcher.ActiveEventFeeds);
    }
}
