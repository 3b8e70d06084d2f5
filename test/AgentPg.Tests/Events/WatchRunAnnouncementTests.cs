using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

/// <summary>The first watch of a root run is announced on agentpg_run_watch so the instance streaming it publishes deltas; every
/// started instance keeps the announced roots until their finish is announced. A finished run's first watch (a replay) must not
/// be announced: its finish was announced before, so each instance would keep it for the rest of its life (and, with any root
/// in the set, look up the root of every child run's answer).</summary>
public sealed class WatchRunAnnouncementTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    [DatabaseFact]
    public async Task WatchRun_FirstWatchOfAFinishedRun_IsNotKeptAsWatchedByTheStartedInstances()
    {
        await using var h = await Harness.StartAsync(db);
        var watcher = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync();
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var calls = 0;
        h.Claude.Respond(async (_, cancellationToken) =>
        {
            if (Interlocked.Increment(ref calls) > 1)
            {
                // The second run stays active while the test looks at the instance's watched roots.
                await held.Task.WaitAsync(cancellationToken);
            }

            return FakeReply.Text("Done.");
        });
        var finished = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "first"), "the first run");

        var replay = new List<RunEvent>();
        await foreach (var e in watcher.WatchRunAsync(finished.RunId))
        {
            replay.Add(e);
        }

        Assert.Equal(finished.RunId, Assert.IsType<RunFinishedEvent>(replay[^1]).RunId);

        // A run still active, watched after the replay: once the instance learned of that watch (announced later on the same
        // channel), it has handled the replay's announcement too, if there was one.
        var active = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "second");
        await using (var events = watcher.WatchRunAsync(active).GetAsyncEnumerator())
        {
            Assert.True(await events.MoveNextAsync());
            await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(active), "the instance learns of the active run's watch", s_timeout);
        }

        Assert.False(h.Client.Engine.Deltas.IsWatched(finished.RunId), "the finished run is not kept as watched");
        held.SetResult();
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(active), "the second run");
    }
}
