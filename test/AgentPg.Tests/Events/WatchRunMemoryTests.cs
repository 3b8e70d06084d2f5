using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Xunit.Abstractions;

namespace AgentPg.Tests.Events;

/// <summary>A watch of a long run: the live-event feed behind <see cref="AgentPgClient.WatchRunAsync"/> holds what its watchers
/// have not read yet, not every event of the run. Before, it kept every event of the root run for as long as it was watched
/// (20 000 deltas of 100 characters: 20 000 events in memory, about 7 MB).</summary>
public sealed class WatchRunMemoryTests(SchemaFixture db, ITestOutputHelper output) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(120);
    private const int Deltas = 20_000;
    private const int Chunk = 2_000;

    // 100 characters a delta: the size of a coalesced delta of a fast stream.
    private static string DeltaText(int i) => $"delta {i:D6} ".PadRight(100, '.');

    [DatabaseFact]
    public async Task WatchRun_20000Deltas_TheFeedHoldsOnlyWhatItsWatcherHasNotRead_AndLateWatchersStillGetEveryEvent()
    {
        await using var h = await Harness.StartAsync(db);
        var watching = await h.AddClientAsync(start: false);
        var (runId, release) = await HeldRunAsync(h);
        await using var fast = watching.WatchRunAsync(runId).GetAsyncEnumerator();
        // What the watcher read, without holding the events (the heap is measured).
        var fastEvents = new List<(long Sequence, string What)>();
        void Note(RunEvent e) => fastEvents.Add((e.Sequence, What(e)));
        await Eventually.WithinAsync(ReadUntilAsync(fast, Note, _ => true), "the watcher's first event", s_timeout);

        var before = GC.GetTotalMemory(forceFullCollection: true);
        for (var from = 0; from < Deltas; from += Chunk)
        {
            await AppendDeltasAsync(runId, from, Chunk);
            var last = DeltaText(from + Chunk - 1);
            await Eventually.WithinAsync(ReadUntilAsync(fast, Note, e => e is TextDeltaEvent d && d.Text == last),
                $"the watcher to read delta {from + Chunk - 1}", s_timeout);
        }

        var after = GC.GetTotalMemory(forceFullCollection: true);
        var retained = watching.RetainedEvents;
        output.WriteLine($"after {Deltas} deltas of 100 characters read by the only watcher: {retained} events held by the feed; managed heap " +
                         $"{before / 1024} KB before, {after / 1024} KB after ({(after - before) / 1024:+#;-#;0} KB; noisy, other tests run beside this one)");
        Assert.True(retained <= 2 * RunEventFeedPage, $"the feed holds {retained} events its only watcher has read (at most {2 * RunEventFeedPage} expected)");

        // Watchers that start now need events the feed dropped: from the start, and resuming from a sequence.
        var resumeAfter = fastEvents[fastEvents.Count / 3].Sequence;
        var fromStart = Task.Run(() => CollectAsync(watching.WatchRunAsync(runId)));
        var resumed = Task.Run(() => CollectAsync(watching.WatchRunAsync(runId, resumeAfter)));
        release.SetResult();
        await Eventually.WithinAsync(ReadUntilAsync(fast, Note, e => e is RunFinishedEvent f && f.RunId == runId), "the watcher to read the finish", s_timeout);
        Assert.False(await fast.MoveNextAsync());

        Assert.Equal(Deltas, fastEvents.Count(e => e.What.StartsWith("delta ", StringComparison.Ordinal)));
        var fromStartEvents = await Eventually.WithinAsync(fromStart, "the watcher from the start to finish", s_timeout);
        AssertComplete(fromStartEvents);
        Assert.Equal(fastEvents, fromStartEvents.Select(e => (e.Sequence, What(e))));
        Assert.Equal(Enumerable.Range(0, Deltas).Select(DeltaText),
            fromStartEvents.OfType<TextDeltaEvent>().Select(d => d.Text).Where(t => t.StartsWith("delta ", StringComparison.Ordinal)));
        var resumedEvents = await Eventually.WithinAsync(resumed, "the resumed watcher to finish", s_timeout);
        Assert.Equal(fastEvents.Where(e => e.Sequence > resumeAfter).Select(e => e.Sequence), resumedEvents.Select(e => e.Sequence));
        Assert.Equal(0, watching.ActiveEventFeeds);
    }

    [DatabaseFact]
    public async Task WatchRun_ASlowWatcher_KeepsWhatItHasNotReadAndGetsEveryEvent_ThenTheFeedLetsGo()
    {
        await using var h = await Harness.StartAsync(db);
        var watching = await h.AddClientAsync(start: false);
        var (runId, release) = await HeldRunAsync(h);
        await using var fast = watching.WatchRunAsync(runId).GetAsyncEnumerator();
        await using var slow = watching.WatchRunAsync(runId).GetAsyncEnumerator();
        var fastEvents = new List<RunEvent>();
        var slowEvents = new List<RunEvent>();
        await Eventually.WithinAsync(ReadUntilAsync(fast, fastEvents.Add, _ => true), "the fast watcher's first event", s_timeout);
        await Eventually.WithinAsync(ReadUntilAsync(slow, slowEvents.Add, _ => true), "the slow watcher's first event", s_timeout);

        const int count = 3 * Chunk;
        for (var from = 0; from < count; from += Chunk)
        {
            await AppendDeltasAsync(runId, from, Chunk);
            var last = DeltaText(from + Chunk - 1);
            await Eventually.WithinAsync(ReadUntilAsync(fast, fastEvents.Add, e => e is TextDeltaEvent d && d.Text == last),
                $"the fast watcher to read delta {from + Chunk - 1}", s_timeout);
        }

        // The slow watcher has not read them: the feed keeps them for it.
        var heldForTheSlowWatcher = watching.RetainedEvents;
        Assert.True(heldForTheSlowWatcher >= count, $"the feed holds {heldForTheSlowWatcher} events; the slow watcher has not read {count} deltas yet");

        release.SetResult();
        await Eventually.WithinAsync(ReadUntilAsync(fast, fastEvents.Add, e => e is RunFinishedEvent), "the fast watcher to read the finish", s_timeout);
        await Eventually.WithinAsync(ReadUntilAsync(slow, slowEvents.Add, e => e is RunFinishedEvent), "the slow watcher to read the finish", s_timeout);

        AssertComplete(slowEvents);
        Assert.Equal(fastEvents.Select(e => e.Sequence), slowEvents.Select(e => e.Sequence));
        Assert.Equal(fastEvents.Select(Describe), slowEvents.Select(Describe));
        // Read by both: dropped, but the last page's worth.
        output.WriteLine($"the feed held {heldForTheSlowWatcher} events for the slow watcher, {watching.RetainedEvents} once it had read them");
        Assert.True(watching.RetainedEvents <= RunEventFeedPage, $"the feed holds {watching.RetainedEvents} events both watchers have read");
    }

    private const int RunEventFeedPage = 500;

    // A delta's number, or the event's type.
    private static string What(RunEvent e) => e is TextDeltaEvent d ? d.Text[..Math.Min(12, d.Text.Length)] : e.GetType().Name;

    private static string Describe(RunEvent e) => e switch
    {
        TextDeltaEvent d => $"{e.Sequence} text {d.Text}",
        _ => $"{e.Sequence} {e.GetType().Name} {e.RunId}",
    };

    /// <summary>Sequences without a gap or a repeat, ending with the run's finish.</summary>
    private static void AssertComplete(List<RunEvent> events)
    {
        for (var i = 1; i < events.Count; i++)
        {
            Assert.True(events[i].Sequence == events[i - 1].Sequence + 1,
                $"event {i} has sequence {events[i].Sequence} after {events[i - 1].Sequence}");
        }

        Assert.IsType<RunFinishedEvent>(events[^1]);
    }

    /// <summary>A streaming run held in its model call (Claude answers once <c>release</c> is set), claimed, its events head
    /// created by a first watch.</summary>
    private async Task<(Guid RunId, TaskCompletionSource Release)> HeldRunAsync(Harness h)
    {
        var agent = await h.AgentAsync();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var inCall = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(async (_, ct) =>
        {
            inCall.TrySetResult();
            await release.Task.WaitAsync(ct);
            return FakeReply.Text("done");
        });
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "talk for a long time");
        await Eventually.WithinAsync(inCall.Task, "the run's model call", s_timeout);
        return (runId, release);
    }

    /// <summary>Appends deltas as the streaming worker does (agentpg_append_run_deltas, under the run's claim): the feed reads
    /// them like any other.</summary>
    private async Task AppendDeltasAsync(Guid runId, int from, int count)
    {
        var instance = await db.ScalarAsync<string>("SELECT claimed_by_instance_id FROM {schema}.agentpg_runs WHERE id = $1", runId);
        var epoch = await db.ScalarAsync<long>("SELECT claim_epoch FROM {schema}.agentpg_runs WHERE id = $1", runId);
        var appended = await db.ScalarAsync<bool>("SELECT {schema}.agentpg_append_run_deltas($1, $2, $3, 1, $4, $5, $6)", runId, instance, epoch,
            Enumerable.Repeat("text", count).ToArray(), Enumerable.Repeat(0, count).ToArray(),
            Enumerable.Range(from, count).Select(DeltaText).ToArray());
        Assert.True(appended, "the deltas were appended under the run's claim");
    }

    private static async Task ReadUntilAsync(IAsyncEnumerator<RunEvent> watcher, Action<RunEvent> read, Func<RunEvent, bool> until)
    {
        while (await watcher.MoveNextAsync())
        {
            read(watcher.Current);
            if (until(watcher.Current))
            {
                return;
            }
        }

        throw new InvalidOperationException("The watch ended first.");
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
}
