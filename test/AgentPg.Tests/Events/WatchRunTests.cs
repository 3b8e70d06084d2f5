using System.Text;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

public sealed class WatchRunTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string LongAnswer =
        "The weather in Paris is mild today, and the researcher confirms it: eighteen degrees, a light breeze from the west, " +
        "no rain before the evening, and clear skies expected for the weekend, which makes it a fine time for a walk by the river.";

    private static string Unique(string name) => name + "_" + Guid.NewGuid().ToString("N")[..6];

    private static readonly ToolSchema s_citySchema = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["city"] = new() { Type = "string" } },
        Required = ["city"],
    };

    /// <summary>A root agent that calls a tool and a delegate agent, then answers slowly; the delegate answers slowly too.
    /// <paramref name="watching"/> holds every model call, <paramref name="finalAnswer"/> the root's answer after the tools, and
    /// <paramref name="finalAnswerRest"/> that answer after its first text delta.</summary>
    private static async Task<(AgentDefinition Root, string ChildName)> ScriptAsync(Harness h, TimeSpan eventDelay, Task? watching = null,
        Task? finalAnswer = null, Task? finalAnswerRest = null)
    {
        string root = Unique("root"), child = Unique("child");
        var childAgent = await h.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = child, Description = "Researcher", Model = "claude-sonnet-4-5", SystemPrompt = $"You are {child}.", Tools = [],
        });
        var rootAgent = await h.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = root, Model = "claude-sonnet-4-5", SystemPrompt = $"You are {root}.", Tools = ["get_weather"], AgentIds = [childAgent.Id],
        });
        h.Claude.Respond(async (request, cancellationToken) =>
        {
            if (watching is not null)
            {
                // The watch started before the model answers, so every delta is published.
                await watching.WaitAsync(cancellationToken);
            }

            if (request.SystemText.Contains(child, StringComparison.Ordinal))
            {
                return FakeReply.Text("Research says: eighteen degrees and a breeze.") with { EventDelay = eventDelay };
            }

            if (request.ToolResults.Count == 0)
            {
                return FakeReply.Message(FakeContentBlock.Text("Let me check."), FakeContentBlock.ToolUse("get_weather", new { city = "Paris" }),
                    FakeContentBlock.ToolUse(child, new { task = "confirm the weather" })) with { StopReason = "tool_use" };
            }

            if (finalAnswer is not null)
            {
                await finalAnswer.WaitAsync(cancellationToken);
            }

            // message_start, content_block_start and ping come before the text deltas.
            return FakeReply.Text(LongAnswer) with
            {
                EventDelay = eventDelay, StreamPause = finalAnswerRest is null ? null : new FakeStreamPause(3 + 1, finalAnswerRest),
            };
        });
        return (rootAgent, child);
    }

    private static TestTool Weather() => new("get_weather", (_, input, _) => Task.FromResult("18 C in " + input.GetProperty("city").GetString()), s_citySchema);

    private static async Task<List<RunEvent>> CollectAsync(IAsyncEnumerable<RunEvent> events, Func<RunEvent, Task>? onEvent = null)
    {
        var list = new List<RunEvent>();
        await foreach (var e in events)
        {
            list.Add(e);
            if (onEvent is not null)
            {
                await onEvent(e);
            }
        }

        return list;
    }

    private static string Deltas(IEnumerable<RunEvent> events, Guid runId, int iteration)
        => string.Concat(events.OfType<TextDeltaEvent>().Where(d => d.RunId == runId && d.IterationNumber == iteration).Select(d => d.Text));

    [DatabaseFact]
    public async Task WatchRun_RunProcessedByAnotherClient_StreamsDeltasToAnUnstartedClientAndEndsWithTheFinish()
    {
        await using var h = await Harness.StartAsync(db, tools: Weather());
        var watcher = await h.AddClientAsync(start: false);
        // The model answers once the worker knows of the watch (the watcher's first event shows the watch registered; the worker
        // learns of it a moment later), so every delta is published; the final answer holds after its first delta until the
        // watcher has read the run's state.
        var workerKnowsTheWatch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstFinalDeltaSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var (agent, childName) = await ScriptAsync(h, TimeSpan.FromMilliseconds(15), workerKnowsTheWatch.Task, finalAnswerRest: firstFinalDeltaSeen.Task);
        var session = await watcher.NewSessionAsync();
        var runId = await watcher.RunFastAsync(session, agent.Id, "What's the weather in Paris?");

        var stateAtFirstFinalDelta = (RunState?)null;
        var events = await Eventually.WithinAsync(CollectAsync(watcher.WatchRunAsync(runId), async e =>
        {
            if (!workerKnowsTheWatch.Task.IsCompleted)
            {
                await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the worker learns of the watch");
                workerKnowsTheWatch.SetResult();
            }

            if (e is TextDeltaEvent { IterationNumber: 2 } && e.RunId == runId && stateAtFirstFinalDelta is null)
            {
                stateAtFirstFinalDelta = (await watcher.GetRunAsync(runId)).State;
                firstFinalDeltaSeen.SetResult();
            }
        }), "the watched run to finish");

        // Deltas arrived while the model was still streaming.
        Assert.NotNull(stateAtFirstFinalDelta);
        Assert.False(stateAtFirstFinalDelta.Value.IsTerminal(), $"the first delta of the answer arrived with the run already {stateAtFirstFinalDelta}");

        Assert.All(events.Zip(events.Skip(1)), p => Assert.True(p.First.Sequence < p.Second.Sequence, "sequences strictly increase"));
        var finished = Assert.IsType<RunFinishedEvent>(events[^1]);
        Assert.Equal(runId, finished.RunId);
        Assert.Equal(RunState.Completed, finished.State);
        Assert.Equal(LongAnswer, finished.Response!.Text);
        Assert.Equal(LongAnswer, Deltas(events, runId, 2));
        Assert.Equal("Let me check.", Deltas(events, runId, 1));
        Assert.All(events, e => Assert.Equal(runId, e.RootRunId));
        Assert.All(events, e => Assert.Equal(session, e.SessionId));

        var stored = events.OfType<MessageStoredEvent>().Where(m => m.RunId == runId).Select(m => m.Message!).ToList();
        Assert.Equal([MessageRole.User, MessageRole.Assistant, MessageRole.User, MessageRole.Assistant], stored.Select(m => m.Role));
        Assert.Equal(LongAnswer, stored[^1].Content[0].Text);
        Assert.Equal([1, 2], events.OfType<IterationStartedEvent>().Where(i => i.RunId == runId).Select(i => i.IterationNumber));

        var weatherStart = Assert.Single(events.OfType<ToolCallStartedEvent>(), t => t.ToolName == "get_weather");
        Assert.Equal("Paris", weatherStart.Input.GetProperty("city").GetString());
        Assert.False(weatherStart.IsAgentTool);
        var weatherDone = Assert.Single(events.OfType<ToolCallCompletedEvent>(), t => t.ToolName == "get_weather");
        Assert.Equal("18 C in Paris", weatherDone.Output);
        Assert.False(weatherDone.IsError);
        Assert.True(events.IndexOf(weatherStart) < events.IndexOf(weatherDone));

        var agentStart = Assert.Single(events.OfType<ToolCallStartedEvent>(), t => t.ToolName == childName);
        Assert.True(agentStart.IsAgentTool);
        var childRunId = agentStart.ChildRunId!.Value;
        var childEvents = events.Where(e => e.RunId == childRunId).ToList();
        Assert.All(childEvents, e => Assert.Equal(1, e.Depth));
        Assert.Equal(RunState.Pending, Assert.IsType<RunStateChangedEvent>(childEvents[0]).State);
        Assert.Equal("Research says: eighteen degrees and a breeze.", Deltas(events, childRunId, 1));
        var childFinished = Assert.Single(events.OfType<RunFinishedEvent>(), f => f.RunId == childRunId);
        Assert.Equal("Research says: eighteen degrees and a breeze.", childFinished.Response!.Text);
        var agentDone = Assert.Single(events.OfType<ToolCallCompletedEvent>(), t => t.ToolName == childName);
        Assert.Equal("Research says: eighteen degrees and a breeze.", agentDone.Output);
        Assert.True(events.IndexOf(childFinished) < events.IndexOf(agentDone), "the child finishes before its tool call completes");
        Assert.Equal(0, watcher.ActiveEventFeeds);
    }

    [DatabaseFact]
    public async Task WatchRun_ResumedAfterKEvents_GivesExactlyTheRemainder()
    {
        await using var h = await Harness.StartAsync(db, tools: Weather());
        var watcher = await h.AddClientAsync(start: false);
        // The model answers once the worker knows of the watch (so the first answers' deltas are published), and the root's final
        // answer waits until the first watcher has gone: the disconnect is mid-run whatever the timing.
        var workerKnowsTheWatch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var disconnected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var (agent, _) = await ScriptAsync(h, TimeSpan.FromMilliseconds(10), workerKnowsTheWatch.Task, disconnected.Task);
        var session = await watcher.NewSessionAsync();
        var runId = await watcher.RunFastAsync(session, agent.Id, "What's the weather in Paris?");

        // A first watcher disconnects after some events, mid-run, then resumes from the last sequence it saw.
        var first = new List<RunEvent>();
        await foreach (var e in watcher.WatchRunAsync(runId))
        {
            first.Add(e);
            if (!workerKnowsTheWatch.Task.IsCompleted)
            {
                await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the worker learns of the watch");
                workerKnowsTheWatch.SetResult();
            }

            if (e is TextDeltaEvent)
            {
                break;
            }
        }

        Assert.False((await watcher.GetRunAsync(runId)).State.IsTerminal(), "the run was still running when the watcher disconnected");
        disconnected.SetResult();
        var rest = await Eventually.WithinAsync(CollectAsync(watcher.WatchRunAsync(runId, first[^1].Sequence)), "the resumed watch to end");
        var everything = await CollectAsync(h.Client.WatchRunAsync(runId));

        Assert.Equal(everything.Select(e => e.Sequence), first.Concat(rest).Select(e => e.Sequence));
        Assert.Equal(everything, first.Concat(rest), RunEventComparer.Instance);
        Assert.IsType<RunFinishedEvent>(rest[^1]);

        // Resuming after any k gives exactly the remainder.
        foreach (var k in new[] { 1, everything.Count / 3, everything.Count - 1 })
        {
            var remainder = await CollectAsync(watcher.WatchRunAsync(runId, everything[k - 1].Sequence));
            Assert.Equal(everything.Skip(k).Select(e => e.Sequence), remainder.Select(e => e.Sequence));
        }

        Assert.Empty(await CollectAsync(watcher.WatchRunAsync(runId, everything[^1].Sequence)));
    }

    [DatabaseFact]
    public async Task WatchRun_FinishedRunNobodyWatched_ReplaysTheStoredHistoryAndEnds()
    {
        await using var h = await Harness.StartAsync(db, tools: Weather());
        var (agent, childName) = await ScriptAsync(h, TimeSpan.Zero);
        var session = await h.Client.NewSessionAsync();
        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "What's the weather in Paris?"), "the run");
        var producer = await h.AddClientAsync(start: false);

        var events = await Eventually.WithinAsync(CollectAsync(producer.WatchRunAsync(response.RunId)), "the replay to end");

        Assert.Equal(Enumerable.Range(1, events.Count).Select(i => (long)i), events.Select(e => e.Sequence));
        var finished = Assert.IsType<RunFinishedEvent>(events[^1]);
        Assert.Equal(response.RunId, finished.RunId);
        Assert.Equal(LongAnswer, finished.Response!.Text);
        var rootMessages = events.OfType<MessageStoredEvent>().Where(m => m.RunId == response.RunId).ToList();
        Assert.Equal(4, rootMessages.Count);
        Assert.Equal(LongAnswer, rootMessages[^1].Message!.Content[0].Text);
        Assert.Contains(events.OfType<ToolCallCompletedEvent>(), t => t.ToolName == "get_weather" && t.Output == "18 C in Paris");
        var agentCall = Assert.Single(events.OfType<ToolCallStartedEvent>(), t => t.ToolName == childName);
        Assert.Contains(events.OfType<RunFinishedEvent>(), f => f.RunId == agentCall.ChildRunId);

        // The same sequences on every replay.
        Assert.Equal(events, await CollectAsync(producer.WatchRunAsync(response.RunId)), RunEventComparer.Instance);
    }

    [DatabaseFact]
    public async Task WatchRun_ChildRun_StreamsOnlyItsHierarchyAndEndsWithItsFinish()
    {
        await using var h = await Harness.StartAsync(db, tools: Weather());
        var (agent, childName) = await ScriptAsync(h, TimeSpan.Zero);
        var session = await h.Client.NewSessionAsync();
        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "What's the weather in Paris?"), "the run");
        var childRunId = response.ToolCalls.Single(c => c.Name == childName).ChildRunId!.Value;

        var events = await CollectAsync(h.Client.WatchRunAsync(childRunId));

        Assert.All(events, e => Assert.Equal(childRunId, e.RunId));
        Assert.All(events, e => Assert.Equal(response.RunId, e.RootRunId));
        Assert.Equal(childRunId, Assert.IsType<RunFinishedEvent>(events[^1]).RunId);
    }

    [DatabaseFact]
    public async Task WatchRun_StreamedTextWithNul_DeltasCarryTheReplacementCharacterLikeTheStoredAnswer()
    {
        await using var h = await Harness.StartAsync(db);
        var watcher = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync();
        // The model answers once the worker knows of the watch (the watcher's first event shows the watch registered; the worker
        // learns of it a moment later): an answer streamed before that would have no deltas at all.
        var workerKnowsTheWatch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(async (_, cancellationToken) =>
        {
            await workerKnowsTheWatch.Task.WaitAsync(cancellationToken);
            return FakeReply.Text("Paris\0is mild today, eighteen degrees.") with { EventDelay = TimeSpan.FromMilliseconds(10) };
        });
        var session = await watcher.NewSessionAsync();
        var runId = await watcher.RunFastAsync(session, agent.Id, "Weather?");

        var events = await Eventually.WithinAsync(CollectAsync(watcher.WatchRunAsync(runId), async _ =>
        {
            if (!workerKnowsTheWatch.Task.IsCompleted)
            {
                await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the worker learns of the watch");
                workerKnowsTheWatch.SetResult();
            }
        }), "the watched run to finish");

        // PostgreSQL cannot store U+0000: the deltas get the same U+FFFD as the stored answer, and none are lost.
        var finished = Assert.IsType<RunFinishedEvent>(events[^1]);
        Assert.Equal(RunState.Completed, finished.State);
        Assert.Equal("Paris\uFFFDis mild today, eighteen degrees.", finished.Response!.Text);
        Assert.Equal(finished.Response.Text, Deltas(events, runId, 1));
    }

    [DatabaseFact]
    public async Task WatchRun_RejectedToolCall_CompletesLiveAsInTheReplay()
    {
        var refund = new TestTool("issue_refund", (_, _, _) => Task.FromResult("refunded"), s_citySchema);
        await using var h = await Harness.StartAsync(db, tools: refund);
        var watcher = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.Message(FakeContentBlock.ToolUse("issue_refund", new { city = "Paris" })) with { StopReason = "tool_use" }
            : FakeReply.Text("Not refunded."));
        var session = await watcher.NewSessionAsync();
        var runId = await watcher.RunFastAsync(session, agent.Id, "Refund Paris.");

        var rejected = false;
        var live = await Eventually.WithinAsync(CollectAsync(watcher.WatchRunAsync(runId), async _ =>
        {
            if (!rejected && await watcher.GetPendingApprovalsAsync(session) is [var request, ..])
            {
                rejected = true;
                await watcher.RejectToolCallAsync(request.ToolExecutionId, "no refunds today");
            }
        }), "the watched run to finish after the rejection");

        // The rejected call completes (as an error) in the live stream, as it does in a replay built from the stored rows.
        Assert.True(rejected);
        var completed = Assert.Single(live.OfType<ToolCallCompletedEvent>());
        Assert.Equal("issue_refund", completed.ToolName);
        Assert.True(completed.IsError);
        Assert.Contains("no refunds today", completed.Output, StringComparison.Ordinal);
        Assert.IsType<RunFinishedEvent>(live[^1]);
        await db.ExecuteAsync("DELETE FROM {schema}.agentpg_run_event_heads WHERE root_run_id = $1", runId);
        var replay = await CollectAsync(watcher.WatchRunAsync(runId));
        Assert.Equal(completed.ToolExecutionId, Assert.Single(replay.OfType<ToolCallCompletedEvent>()).ToolExecutionId);
    }

    [DatabaseFact]
    public async Task WatchRun_UnknownRun_ThrowsRunNotFound()
    {
        await using var h = await Harness.StartAsync(db, start: false);

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await CollectAsync(h.Client.WatchRunAsync(Guid.NewGuid())));

        Assert.Equal(AgentPgErrorCode.RunNotFound, ex.Code);
        Assert.Equal(0, h.Client.ActiveEventFeeds);
    }

    [DatabaseFact]
    public async Task WatchRun_ReplayOfADelegationRefusedAtTheDepthLimit_HasNoToolCallStart()
    {
        // An agent tool call starts when its child run exists; one refused at the depth limit never has one (its execution was
        // claimed, started_at set, then failed). The replay built for a first watch must say what a live watch says: it
        // completed, failed, without starting.
        await using var h = await Harness.StartAsync(db, o => o.MaxAgentDepth = 1);
        string boss = Unique("boss"), mid = Unique("mid"), leaf = Unique("leaf");
        var leafAgent = await h.AgentAsync(a => a with { Name = leaf, SystemPrompt = leaf, Description = "Leaf" });
        var midAgent = await h.AgentAsync(a => a with { Name = mid, SystemPrompt = mid, Description = "Mid", AgentIds = [leafAgent.Id] });
        var bossAgent = await h.AgentAsync(a => a with { Name = boss, SystemPrompt = boss, AgentIds = [midAgent.Id] });
        h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text(r.SystemText + " got: " + r.ToolResults[0].Content)
            : r.SystemText == boss ? FakeReply.ToolUse(mid, new { task = "file it" }) : FakeReply.ToolUse(leaf, new { task = "file it" }));
        var session = await h.Client.NewSessionAsync();
        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, bossAgent.Id, "file the report"), "the run");

        var events = await Eventually.WithinAsync(CollectAsync(h.Client.WatchRunAsync(response.RunId)), "the replay to end");

        var refused = Assert.Single(events.OfType<ToolCallCompletedEvent>(), c => c.ToolName == leaf);
        Assert.True(refused.IsError);
        Assert.Contains("Delegation refused", refused.Output, StringComparison.Ordinal);
        Assert.DoesNotContain(events.OfType<ToolCallStartedEvent>(), s => s.ToolName == leaf);
        Assert.Single(events.OfType<ToolCallStartedEvent>(), s => s.ToolName == mid);
    }

    [DatabaseFact]
    public async Task WatchRun_CancelledMidStream_LeavesNoFeedAndNoConnection()
    {
        await using var h = await Harness.StartAsync(db, tools: Weather());
        var watcher = await h.AddClientAsync(start: false);
        // The model answers once the worker knows of the watch, so deltas are published (a run that streamed before it learned of
        // the watch has none, and the watch would end without being cancelled).
        var workerKnowsTheWatch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var (agent, _) = await ScriptAsync(h, TimeSpan.FromMilliseconds(20), workerKnowsTheWatch.Task);
        var session = await watcher.NewSessionAsync();
        var runId = await watcher.RunFastAsync(session, agent.Id, "What's the weather in Paris?");
        using var cts = new CancellationTokenSource();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(async () =>
        {
            await foreach (var e in watcher.WatchRunAsync(runId, cancellationToken: cts.Token))
            {
                if (!workerKnowsTheWatch.Task.IsCompleted)
                {
                    await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the worker learns of the watch");
                    workerKnowsTheWatch.SetResult();
                }

                if (e is TextDeltaEvent)
                {
                    Assert.Equal(1, watcher.ActiveEventFeeds);
                    await cts.CancelAsync();
                }
            }
        });

        Assert.Equal(0, watcher.ActiveEventFeeds);
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run to complete without its watcher");
        // Only the watcher's LISTEN connection stays open: every query connection went back to the pool.
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'agentpg-listen:%' AND application_name = $1",
                "agentpg-listen:" + watcher.InstanceId) == 1,
            "the watcher to hold its one LISTEN connection");
    }

    [DatabaseFact]
    public async Task RunEventRetention_FinishedRunsEventsAreDeletedByTheLeader()
    {
        // An hour's retention and a run made to look finished (and first watched) two hours ago: with a retention of 1 ms the
        // leader could delete the events between the watch's back-fill and its first read (the watch then saw nothing).
        await using var h = await Harness.StartAsync(db, o => o.RunEventRetention = TimeSpan.FromHours(1));
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        h.Claude.Enqueue(FakeReply.Text("done"));
        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "hi"), "the run");
        Assert.NotEmpty(await CollectAsync(h.Client.WatchRunAsync(response.RunId)));

        await AgeAsync(response.RunId, finished: true, watched: true);

        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_run_events WHERE root_run_id = $1", response.RunId) == 0, "the leader to delete the events");
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_run_event_heads WHERE root_run_id = $1", response.RunId));
        // Messages stay; watching again replays them.
        Assert.IsType<RunFinishedEvent>((await CollectAsync(h.Client.WatchRunAsync(response.RunId)))[^1]);
    }

    [DatabaseFact]
    public async Task RunEventRetention_TheFirstWatchOfARunFinishedLongAgo_KeepsItsReplayForTheRetention_SoAResumeFindsTheSameEvents()
    {
        // Before: the leader's next pass deleted the replay a first watch had just built (the run had finished long ago), so
        // the watch could see nothing and a resume found other sequences.
        await using var h = await Harness.StartAsync(db, o => o.RunEventRetention = TimeSpan.FromHours(1));
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("old answer"), FakeReply.Text("sentinel"));
        var old = (await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "long ago"), "the old run")).RunId;
        var sentinel = (await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "sentinel"), "the sentinel run")).RunId;
        Assert.NotEmpty(await CollectAsync(h.Client.WatchRunAsync(sentinel)));
        await AgeAsync(old, finished: true, watched: false);

        var first = await Eventually.WithinAsync(CollectAsync(h.Client.WatchRunAsync(old)), "the first watch of the old run");
        Assert.IsType<RunFinishedEvent>(first[^1]);

        // The sentinel's events are due: once the leader deleted them, a pass ran after the old run's replay was built.
        await AgeAsync(sentinel, finished: true, watched: true);
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_run_event_heads WHERE root_run_id = $1", sentinel) == 0, "the leader's retention pass");

        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_run_event_heads WHERE root_run_id = $1", old));
        var resumed = await Eventually.WithinAsync(CollectAsync(h.Client.WatchRunAsync(old, first[0].Sequence)), "the resumed watch");
        Assert.Equal(first.Skip(1), resumed, RunEventComparer.Instance);
    }

    /// <summary>Makes a run look finished (and its events' head created) two hours ago.</summary>
    private async Task AgeAsync(Guid runId, bool finished, bool watched)
    {
        if (finished)
        {
            Assert.Equal(1, await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET finalized_at = now() - interval '2 hours' WHERE id = $1", runId));
        }

        if (watched)
        {
            Assert.Equal(1, await db.ExecuteAsync("UPDATE {schema}.agentpg_run_event_heads SET created_at = now() - interval '2 hours' WHERE root_run_id = $1", runId));
        }
    }

    /// <summary>Events are equal when they have the same type, run and sequence (payloads hold reference-typed members).</summary>
    private sealed class RunEventComparer : IEqualityComparer<RunEvent>
    {
        public static readonly RunEventComparer Instance = new();

        public bool Equals(RunEvent? x, RunEvent? y)
            => x is not null && y is not null && x.GetType() == y.GetType() && x.Sequence == y.Sequence && x.RunId == y.RunId && Text(x) == Text(y);

        public int GetHashCode(RunEvent obj) => obj.Sequence.GetHashCode();

        private static string? Text(RunEvent e) => e switch
        {
            TextDeltaEvent t => t.Text,
            MessageStoredEvent m => m.Message?.Id.ToString(),
            _ => null,
        };
    }
}
