using AgentPg.Notifications;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

/// <summary>An instance keeps the watched root runs it was told of until their finish is announced. A finish announced while its
/// LISTEN connection was down is lost: the reconnect's catch-up read of the watched active roots also drops the roots it knew
/// that are no longer active (before, they stayed in the set for the rest of the instance's life).</summary>
public sealed class WatchRunLostFinishTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    [DatabaseFact]
    public async Task WatchedRootFinishingWhileTheListenerIsDown_IsNoLongerWatchedAfterTheReconnect()
    {
        // The listener's first reconnect delay (100 ms) is held: the run finishes while the instance listens to nothing. Only
        // the listener's: the tool worker's poll wait (100 ms in the tests' options) was held too, created first, so
        // WaitForTimerAsync returned before the listener saw its loss, and a loss seen after FireAll held the reconnect for
        // good; the worker's other 100 ms timers (its claim loop's first error delay, a database step's second retry) held
        // could stall the run.
        var reconnect = new HeldTimeouts(TimeSpan.FromMilliseconds(100), typeof(NotificationListener));
        await using var h = await Harness.StartAsync(db, o => o.TimeProvider = reconnect);
        var watcher = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync();
        var answer = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(async (_, cancellationToken) =>
        {
            await answer.Task.WaitAsync(cancellationToken);
            return FakeReply.Text("Done.");
        });
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "hello");
        var events = watcher.WatchRunAsync(run).GetAsyncEnumerator();
        try
        {
            Assert.True(await events.MoveNextAsync());
            await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(run), "the instance learns of the watch", s_timeout);
            var appName = "agentpg-listen:" + h.Client.InstanceId;
            var listener = await db.ScalarAsync<int>("SELECT pid FROM pg_stat_activity WHERE application_name = $1", appName);

            await db.ScalarAsync<bool>("SELECT pg_terminate_backend($1)", listener);
            await reconnect.WaitForTimerAsync();
            answer.SetResult();
            RunEvent last = events.Current;
            // Bounded: a watch that never ends fails here with what it waited for (it once hung a loaded suite for 20 minutes).
            while (await Eventually.WithinAsync(events.MoveNextAsync().AsTask(), $"the watcher's next event after {last.GetType().Name} {last.Sequence}", s_timeout))
            {
                last = events.Current;
            }

            Assert.Equal(run, Assert.IsType<RunFinishedEvent>(last).RunId);
            Assert.True(h.Client.Engine.Deltas.IsWatched(run), "the finish was announced while the instance did not listen");
            reconnect.FireAll();

            await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND pid <> $2", appName, listener) > 0,
                "the LISTEN connection is re-established", s_timeout);
            await Eventually.TrueAsync(() => !h.Client.Engine.Deltas.IsWatched(run), "the instance drops the finished root after the reconnect", s_timeout);
        }
        finally
        {
            await events.DisposeAsync();
        }
    }
}
