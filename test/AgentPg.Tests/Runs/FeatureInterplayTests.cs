using System.Collections.Concurrent;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Approvals;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>Features used together in one run: approvals, compaction, delegation, tool retries, cancellation and live events.</summary>
public sealed class FeatureInterplayTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string SummarizerPrompt = "You summarise conversations";
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static bool IsSummarizer(RecordedRequest r)
        => r.IsMessagesCall && r.Body is { } b && b.TryGetProperty("system", out var s) && s.ToString().Contains(SummarizerPrompt, StringComparison.Ordinal);

    private static bool IsSummarizer(FakeRequest r) => r.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal);

    private static async Task<List<RunEvent>> CollectAsync(IAsyncEnumerable<RunEvent> events)
    {
        var list = new List<RunEvent>();
        await foreach (var e in events)
        {
            list.Add(e);
        }

        return list;
    }

    [DatabaseFact]
    public async Task ApprovedWithAnEdit_AutoCompactionBeforeTheContinuation_KeepsThePairingAndAppliesTheDecision()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.AutoCompaction = true;
            o.Compaction = new CompactionOptions
            {
                Strategy = CompactionStrategy.Summarization, MaxTokensForModel = 4_000, Trigger = 0.5, TargetTokens = 500, ProtectedTokens = 50, PreserveLastN = 0,
                UseTokenCountingApi = false,
            };
        }, tools: refunds.Tool());
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => IsSummarizer(r) ? FakeReply.Text("SUMMARY: the user asked for a refund") : Refunds.Script(r));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund order A-1, here is the whole story: " + new string('s', 9_000));
        var live = new List<RunEvent>();
        await using var watch = h.Client.WatchRunAsync(runId).GetAsyncEnumerator();
        while (await Eventually.WithinAsync(watch.MoveNextAsync().AsTask(), "the approval request", s_timeout) && watch.Current is not ApprovalRequestedEvent)
        {
            live.Add(watch.Current);
        }

        live.Add(watch.Current);
        var request = await Refunds.PendingAsync(h.Client, session, s_timeout);
        Assert.Equal(0, h.Claude.Requests.Count(IsSummarizer));

        await h.Client.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { order = "A-1", amount = 25 }), "capped");
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);
        while (await Eventually.WithinAsync(watch.MoveNextAsync().AsTask(), "the rest of the live watch", s_timeout))
        {
            live.Add(watch.Current);
        }

        Assert.Equal(1, h.Claude.Requests.Count(IsSummarizer));
        Assert.EndsWith("refunded 25 on A-1", response.Text, StringComparison.Ordinal);
        Assert.Equal(25, Assert.Single(refunds.Calls).GetProperty("amount").GetInt32());
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.True(messages[0].IsSummary, string.Join(", ", messages.Select(m => m.Role + (m.IsSummary ? "*" : ""))));
        Assert.Equal(4, messages.Count);

        // The live watch saw every message as stored, then the finish; a late watcher replays the same events, but the
        // prompt's MessageStoredEvent has no message any more: the summary replaced it.
        Assert.Equal(RunState.Completed, Assert.IsType<RunFinishedEvent>(live[^1]).State);
        var replay = await Eventually.WithinAsync(CollectAsync(h.Client.WatchRunAsync(runId)), "the replay", s_timeout);
        Assert.Equal(live.Select(e => (e.Sequence, e.GetType())), replay.Select(e => (e.Sequence, e.GetType())));
        var liveStored = live.OfType<MessageStoredEvent>().ToList();
        var stored = replay.OfType<MessageStoredEvent>().ToList();
        Assert.Equal(4, stored.Count);
        Assert.Equal(MessageRole.User, liveStored[0].Message!.Role);
        Assert.Null(stored[0].Message);
        Assert.Equal(messages.Skip(1).Select(m => m.Id), stored.Skip(1).Select(e => e.Message!.Id));

        // The run's prompt was summarised: the summary tells the attempt a regeneration would discard, so it is refused until
        // the compaction is restored. Then the new run asks again, its first request holds nothing of the old attempt, and the
        // conversation stays valid.
        var compaction = Assert.Single(await h.Client.GetCompactionEventsAsync(session));
        var refused = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RegenerateRunAsync(runId));
        Assert.Equal(AgentPgErrorCode.RunCompacted, refused.Code);
        Assert.Equal(messages.Select(m => m.Id), (await h.Client.GetMessagesAsync(session)).Select(m => m.Id));
        await h.Client.RestoreCompactionAsync(compaction.Id);
        var sentBefore = h.Claude.Requests.Count;
        var regenerated = await h.Client.RegenerateRunAsync(runId);
        var again = await Refunds.PendingAsync(h.Client, session, s_timeout);
        var asked = h.Claude.Requests.Skip(sentBefore).First(r => r.IsMessagesCall && !IsSummarizer(r)).Body!.Value.GetProperty("messages");
        Assert.Equal(1, asked.GetArrayLength());
        Assert.StartsWith("refund order A-1, here is the whole story: ", asked[0].GetProperty("content")[0].GetProperty("text").GetString(), StringComparison.Ordinal);
        Assert.Equal(regenerated, again.RunId);
        await h.Client.RejectToolCallAsync(again.ToolExecutionId, "done already");
        Assert.Equal("ERROR The tool call was rejected by the approver: done already",
            (await Eventually.WithinAsync(h.Client.WaitForRunAsync(regenerated), "the regenerated run", s_timeout)).Text);
    }

    [DatabaseFact]
    public async Task DelegationApprovedWithAnEditedTask_TheChildRunsTheEditedTask_AndTheParentIsTold()
    {
        await using var h = await Harness.StartAsync(db);
        string boss = "boss_" + Guid.NewGuid().ToString("N")[..6], clerk = "clerk_" + Guid.NewGuid().ToString("N")[..6];
        var clerkAgent = await h.AgentAsync(a => a with { Name = clerk, SystemPrompt = clerk, Tools = [] });
        var bossAgent = await h.AgentAsync(a => a with { Name = boss, SystemPrompt = boss, Tools = [], AgentIds = [clerkAgent.Id], ToolsRequiringApproval = [clerk] });
        h.Claude.Respond(r => r.SystemText == boss
            ? r.ToolResults.Count > 0 ? FakeReply.Text(boss + " got: " + r.ToolResults[0].Content) : FakeReply.ToolUse(clerk, new { task = "refund A-1 in full" })
            : FakeReply.Text("did: " + r.LastUserText));
        var session = await h.Client.NewSessionAsync();
        var rootId = await h.Client.RunFastAsync(session, bossAgent.Id, "handle it");
        var request = await Refunds.PendingAsync(h.Client, session, s_timeout, clerk);

        await h.Client.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { task = "refund A-1, half" }));
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(rootId), "the tree", s_timeout);

        var call = Assert.Single(response.ToolCalls);
        Assert.Equal("refund A-1, half", (await h.Client.GetRunAsync(call.ChildRunId!.Value)).Prompt);
        Assert.StartsWith(boss + " got: The approver changed the input of this call before it ran; it ran with {", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("\n\ndid: refund A-1, half", response.Text, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task BatchRunWaitingForApproval_Cancelled_ThenTheNextBatchRunAndARegenerationWork()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => r.LastUserText == "just say hi" ? FakeReply.Text("hi") : Refunds.Script(r));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunAsync(session, agent.Id, "refund");
        var request = await Refunds.PendingAsync(h.Client, session, s_timeout);

        await h.Client.CancelRunAsync(runId);

        Assert.Empty(await h.Client.GetPendingApprovalsAsync(session));
        Assert.Equal(AgentPgErrorCode.RunCancelled,
            (await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the cancelled run", s_timeout))).Code);
        var next = await Eventually.WithinAsync(h.Client.RunSyncAsync(session, agent.Id, "just say hi"), "the next batch run", s_timeout);
        Assert.Equal("hi", next.Text);
        var regenerated = await h.Client.RegenerateRunAsync(next.RunId);
        Assert.Equal("hi", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(regenerated), "the regenerated batch run", s_timeout)).Text);
        Assert.Empty(refunds.Calls);
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, (await Assert.ThrowsAsync<AgentPgException>(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId))).Code);
    }

    /// <summary>The text of every tool_result Claude is sent, oldest first.</summary>
    private static string ToolResultsSent(FakeRequest request) => string.Join(" | ", request.Messages.EnumerateArray()
        .Where(m => m.GetProperty("content").ValueKind == JsonValueKind.Array)
        .SelectMany(m => m.GetProperty("content").EnumerateArray())
        .Where(b => b.GetProperty("type").GetString() == "tool_result")
        .Select(b => b.TryGetProperty("content", out var c) ? c.ValueKind == JsonValueKind.String ? c.GetString() : c.GetRawText() : ""));

    /// <summary>A session where Claude asked to refund 40, the approver edited it to 25 (comment "capped at 25"), and a chat
    /// turn followed; the model answers "how much?" with every tool_result it is sent, and the summariser with "SUMMARY".</summary>
    private static async Task<(AgentDefinition Agent, Guid Session)> EditedRefundSessionAsync(Harness h, ConcurrentQueue<string> summariserPrompts)
    {
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r =>
        {
            if (IsSummarizer(r))
            {
                summariserPrompts.Enqueue(r.LastUserText);
                return FakeReply.Text("SUMMARY");
            }

            return r.LastUserText switch
            {
                "how much?" => FakeReply.Text(ToolResultsSent(r)),
                "thanks" => FakeReply.Text("you are welcome"),
                _ => Refunds.Script(r),
            };
        });
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund order A-1");
        var request = await Refunds.PendingAsync(h.Client, session, s_timeout);
        await h.Client.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { order = "A-1", amount = 25 }), "capped at 25");
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "thanks"), "the chat turn", s_timeout);
        return (agent, session);
    }

    [DatabaseFact]
    public async Task ApprovalWithEditedInput_ThenCompaction_ClaudeAndTheSummariserStillLearnWhatRan()
    {
        // Claude's tool_use says 40; only the tool_result's note says that 25 ran (docs/approvals.md). Before, pruning (the
        // default Hybrid strategy's first step) replaced the whole tool_result, note included, with the placeholder, and the
        // summariser was shown the placeholder too: after a compaction Claude could only believe it had refunded 40.
        var refunds = new Refunds();
        var prompts = new ConcurrentQueue<string>();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool(receipt: "; receipt: " + new string('r', 400)));
        var (agent, session) = await EditedRefundSessionAsync(h, prompts);
        static CompactionOptions Options(int target) => new() { ProtectedTokens = 0, PreserveLastN = 1, TargetTokens = target, UseTokenCountingApi = false };

        var pruned = await h.Client.CompactAsync(session, Options(100_000));

        Assert.Equal(1, pruned.MessagesPruned);
        Assert.False(pruned.SummaryCreated);
        var answer = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "how much?"), "the question after pruning", s_timeout);
        Assert.StartsWith("The approver changed the input of this call before it ran; it ran with {", answer.Text, StringComparison.Ordinal);
        Assert.Contains("\"amount\": 25", answer.Text, StringComparison.Ordinal);
        Assert.EndsWith(" (comment: \"capped at 25\").\n\n" + "[TOOL OUTPUT PRUNED]", answer.Text, StringComparison.Ordinal);
        // Pruned once is pruned: summarised later, the pruned result is shown to the summariser as it is stored, note included.
        Assert.True((await h.Client.CompactAsync(session, Options(1))).SummaryCreated);
        Assert.Contains("(comment: \"capped at 25\").\n\n[TOOL OUTPUT PRUNED]]", Assert.Single(prompts), StringComparison.Ordinal);

        // A session never pruned, summarised by Hybrid: the summariser is shown the note in place of the pruned output.
        var (_, other) = await EditedRefundSessionAsync(h, prompts);
        var summarised = await h.Client.CompactAsync(other, Options(1));
        Assert.True(summarised.SummaryCreated);
        Assert.Equal(2, prompts.Count);
        var prompt = prompts.Last();
        Assert.Contains("[Tool Result for ", prompt, StringComparison.Ordinal);
        Assert.Contains("The approver changed the input of this call before it ran; it ran with {", prompt, StringComparison.Ordinal);
        Assert.Contains("(comment: \"capped at 25\").\n\n[TOOL OUTPUT PRUNED]]", prompt, StringComparison.Ordinal);
        Assert.Equal(2, refunds.Calls.Count);
    }

    [DatabaseFact]
    public async Task AutoCompactionInsideAToolLoop_BreakpointsFollowTheCompactedConversation_AndUsageIsSummedAcrossIt()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { MinimumCacheableTokens = 50 }, o =>
        {
            o.AutoCompaction = true;
            o.Compaction = new CompactionOptions
            {
                Strategy = CompactionStrategy.Summarization, MaxTokensForModel = 4_000, Trigger = 0.5, TargetTokens = 500, ProtectedTokens = 50, PreserveLastN = 0,
                UseTokenCountingApi = false,
            };
        }, tools: new TestTool("lookup", (_, _, _) => Task.FromResult(new string('r', 600))));
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"], SystemPrompt = "You are a test agent. " + new string('s', 400) });
        h.Claude.Respond(r => IsSummarizer(r) ? FakeReply.Text("SUMMARY of the long document " + new string('m', 300))
            : r.LastUserText.Contains("look it up", StringComparison.Ordinal) && r.ToolResults.Count == 0 ? FakeReply.ToolUse("lookup", new { })
            : FakeReply.Text("noted"));
        var session = await h.Client.NewSessionAsync();
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "a long document: " + new string('d', 9_000)), "the first run", s_timeout);
        Assert.Equal(0, h.Claude.Requests.Count(IsSummarizer));
        var before = h.Claude.Requests.Count;

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "look it up " + new string('p', 300)), "the run that compacts", s_timeout);

        var requests = h.Claude.Requests.Skip(before).Where(r => r.IsMessagesCall).ToList();
        Assert.True(IsSummarizer(requests[0]), "the compaction comes before the run's first request");
        var calls = requests.Skip(1).Select(r => r.Body!.Value).ToList();
        Assert.Equal(2, calls.Count);
        foreach (var body in calls)
        {
            var messages = body.GetProperty("messages");
            Assert.StartsWith("[Summary of the earlier conversation", messages[0].GetProperty("content")[0].GetProperty("text").GetString(), StringComparison.Ordinal);
            Assert.True(Breakpoint(messages[messages.GetArrayLength() - 1]), "the moving breakpoint ends the conversation");
            Assert.True(Assert.Single(body.GetProperty("system").EnumerateArray()).TryGetProperty("cache_control", out _), "the stable prefix ends with the system prompt");
            Assert.True(body.GetRawText().Split("\"cache_control\"").Length - 1 <= 3);
        }

        // The second request marks where the first ended (the prompt, sent in one user turn after the summary), and reads it
        // from the cache.
        Assert.Equal(1, calls[0].GetProperty("messages").GetArrayLength());
        Assert.True(Breakpoint(calls[1].GetProperty("messages")[0]));
        var iterations = await h.Client.GetIterationsAsync(response.RunId);
        Assert.Equal(2, iterations.Count);
        Assert.True(iterations[0].Usage.CacheCreationInputTokens > 0, "the compacted prefix is written once");
        Assert.True(iterations[1].Usage.CacheReadInputTokens > iterations[0].Usage.CacheReadInputTokens, "the next request reads it");
        Assert.Equal(iterations.Sum(i => i.Usage.CacheReadInputTokens), response.Usage.CacheReadInputTokens);
        Assert.Equal(iterations.Sum(i => i.Usage.CacheCreationInputTokens), response.Usage.CacheCreationInputTokens);
        Assert.Equal(iterations.Sum(i => i.Usage.InputTokens), response.Usage.InputTokens);
        // The summariser's call is the compaction's, not the run's.
        var compaction = Assert.Single(await h.Client.GetCompactionEventsAsync(session));
        Assert.True(compaction.Usage.OutputTokens > 0);
        Assert.Equal(iterations.Sum(i => i.Usage.OutputTokens), response.Usage.OutputTokens);

        static bool Breakpoint(JsonElement message)
            => message.GetProperty("content") is { ValueKind: JsonValueKind.Array } content && content[content.GetArrayLength() - 1].TryGetProperty("cache_control", out _);
    }

    [DatabaseFact]
    public async Task CompactAsync_WhileARunWaitsForApproval_LeavesTheRunsMessages_AndTheDecisionStillApplies()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => IsSummarizer(r) ? FakeReply.Text("SUMMARY of earlier turns")
            : r.LastUserText.StartsWith("chat", StringComparison.Ordinal) && r.ToolResults.Count == 0 ? FakeReply.Text("ok " + new string('o', 2000)) : Refunds.Script(r));
        var session = await h.Client.NewSessionAsync();
        for (var i = 0; i < 4; i++)
        {
            await h.Client.RunFastSyncAsync(session, agent.Id, $"chat {i} " + new string('c', 2000));
        }

        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund order A-1");
        var request = await Refunds.PendingAsync(h.Client, session, s_timeout);
        var before = await h.Client.GetMessagesAsync(session);

        var result = await h.Client.CompactAsync(session, new CompactionOptions
        {
            Strategy = CompactionStrategy.Summarization, ProtectedTokens = 0, PreserveLastN = 0, TargetTokens = 100, UseTokenCountingApi = false,
        });
        Assert.True(result.SummaryCreated);
        var after = await h.Client.GetMessagesAsync(session);
        // The waiting run's messages are all still there.
        Assert.Equal(before.Where(m => m.RunId == runId).Select(m => m.Id), after.Where(m => m.RunId == runId).Select(m => m.Id));

        await h.Client.ApproveToolCallAsync(request.ToolExecutionId);
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);
        Assert.Equal("refunded 40 on A-1", response.Text);
        Assert.Single(refunds.Calls);
    }

    [DatabaseFact]
    public async Task ChildWaitsForApproval_RootCancelled_RequestClosed_WatchEndsCancelled_ResumeGivesTheSameTail_SessionGoesOn()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        string boss = "boss_" + Guid.NewGuid().ToString("N")[..6], clerk = "clerk_" + Guid.NewGuid().ToString("N")[..6];
        var clerkAgent = await h.AgentAsync(a => a with { Name = clerk, SystemPrompt = clerk, Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        var bossAgent = await h.AgentAsync(a => a with { Name = boss, SystemPrompt = boss, Tools = [], AgentIds = [clerkAgent.Id] });
        h.Claude.Respond(r => r.LastUserText == "just say hi" ? FakeReply.Text("hi")
            : r.ToolResults.Count > 0 ? FakeReply.Text(r.SystemText + " got: " + r.ToolResults[0].Content)
            : r.SystemText == boss ? FakeReply.ToolUse(clerk, new { task = "refund A-1" }) : Refunds.Script(r));
        var session = await h.Client.NewSessionAsync();
        var rootId = await h.Client.RunFastAsync(session, bossAgent.Id, "handle the refund");
        var watcher = h.Client.WatchRunAsync(rootId).GetAsyncEnumerator();
        var request = await Refunds.PendingAsync(h.Client, session, s_timeout);
        Assert.Equal(1, request.Depth);

        await h.Client.CancelRunAsync(rootId);

        Assert.Empty(await h.Client.GetPendingApprovalsAsync(session));
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(request.RunId)).State);
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, (await Assert.ThrowsAsync<AgentPgException>(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId))).Code);
        var seen = new List<RunEvent>();
        while (await Eventually.WithinAsync(watcher.MoveNextAsync().AsTask(), "the watch of the cancelled tree", s_timeout))
        {
            seen.Add(watcher.Current);
        }

        await watcher.DisposeAsync();
        var finished = seen.OfType<RunFinishedEvent>().Where(e => e.RunId == rootId).ToList();
        Assert.Equal(RunState.Cancelled, Assert.Single(finished).State);
        Assert.IsType<RunFinishedEvent>(seen[^1]);
        Assert.Equal(seen.Select(e => e.Sequence).Distinct().Count(), seen.Count);

        // Resuming mid-way gives the same tail.
        var full = await Eventually.WithinAsync(CollectAsync(h.Client.WatchRunAsync(rootId)), "the replay", s_timeout);
        Assert.Equal(seen.Select(e => (e.Sequence, e.GetType())), full.Select(e => (e.Sequence, e.GetType())));
        var middle = full[full.Count / 2].Sequence;
        var tail = await Eventually.WithinAsync(CollectAsync(h.Client.WatchRunAsync(rootId, middle)), "the resumed replay", s_timeout);
        Assert.Equal(full.Where(e => e.Sequence > middle).Select(e => (e.Sequence, e.GetType())), tail.Select(e => (e.Sequence, e.GetType())));

        var next = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, bossAgent.Id, "just say hi"), "the next run", s_timeout);
        Assert.Equal("hi", next.Text);
        var regenerated = await h.Client.RegenerateRunAsync(next.RunId);
        Assert.Equal("hi", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(regenerated), "the regenerated run", s_timeout)).Text);
        Assert.Empty(refunds.Calls);
    }

    [DatabaseFact]
    public async Task ChildsApprovalTimesOut_TheParentGetsTheChildsAnswerToTheRejection()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.ApprovalTimeout = TimeSpan.FromMilliseconds(300);
            o.CleanupInterval = TimeSpan.FromMilliseconds(200);
        }, tools: refunds.Tool());
        string boss = "boss_" + Guid.NewGuid().ToString("N")[..6], clerk = "clerk_" + Guid.NewGuid().ToString("N")[..6];
        var clerkAgent = await h.AgentAsync(a => a with { Name = clerk, SystemPrompt = clerk, Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        var bossAgent = await h.AgentAsync(a => a with { Name = boss, SystemPrompt = boss, Tools = [], AgentIds = [clerkAgent.Id] });
        h.Claude.Respond(r => r.SystemText == boss
            ? r.ToolResults.Count > 0 ? FakeReply.Text(boss + " got: " + (r.ToolResults[0].IsError ? "ERROR " : "") + r.ToolResults[0].Content) : FakeReply.ToolUse(clerk, new { task = "refund A-1" })
            : Refunds.Script(r));
        var session = await h.Client.NewSessionAsync();
        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, bossAgent.Id, "handle"), "the tree", s_timeout);
        Assert.Equal($"{boss} got: ERROR The tool call was rejected by the approver: approval timed out", response.Text);
        Assert.Empty(refunds.Calls);
    }

    [DatabaseFact]
    public async Task ApprovedToolFails_TheRetryIsNotAskedForAgain()
    {
        var attempts = 0;
        var requested = new ConcurrentQueue<ToolApprovalRequest>();
        var tool = new TestTool("issue_refund", (_, input, _) =>
        {
            if (Interlocked.Increment(ref attempts) == 1)
            {
                throw new InvalidOperationException("payment gateway down");
            }

            return Task.FromResult($"refunded {input.GetProperty("amount").GetDouble()} on {input.GetProperty("order").GetString()}");
        });
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.ToolRetry.MaxAttempts = 2;
            o.Hooks = new AgentPgHooks { OnApprovalRequested = (r, _) => { requested.Enqueue(r); return Task.CompletedTask; } };
        }, tools: tool);
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => Refunds.Script(r));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
        var events = new List<RunEvent>();
        await using var watch = h.Client.WatchRunAsync(runId).GetAsyncEnumerator();
        while (await Eventually.WithinAsync(watch.MoveNextAsync().AsTask(), "the approval request", s_timeout) && watch.Current is not ApprovalRequestedEvent)
        {
            events.Add(watch.Current);
        }

        events.Add(watch.Current);
        var request = await Refunds.PendingAsync(h.Client, session, s_timeout);
        // The hook is not awaited by the run, and it announces only requests still waiting when it reads them back: wait for it
        // before deciding.
        await Eventually.TrueAsync(() => !requested.IsEmpty, "OnApprovalRequested is called");

        await h.Client.ApproveToolCallAsync(request.ToolExecutionId);
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run", s_timeout);
        while (await Eventually.WithinAsync(watch.MoveNextAsync().AsTask(), "the rest of the watch", s_timeout))
        {
            events.Add(watch.Current);
        }

        // One decision for the call: the failed attempt is retried without asking again.
        Assert.Equal("refunded 40 on A-1", response.Text);
        Assert.Equal(2, attempts);
        Assert.Single(requested);
        Assert.Empty(await h.Client.GetPendingApprovalsAsync(session));
        var call = Assert.Single(response.ToolCalls);
        Assert.True(call.Approval!.Approved);
        Assert.Equal(ToolExecutionState.Completed, call.State);
        // The watcher sees one request, a start per attempt (docs/streaming.md) and one completion, in that order.
        Assert.Equal(request.ToolExecutionId, Assert.Single(events.OfType<ApprovalRequestedEvent>()).ToolExecutionId);
        Assert.Equal(
            ["ApprovalRequestedEvent", "ToolCallStartedEvent", "ToolCallStartedEvent", "ToolCallCompletedEvent"],
            events.Where(e => e is ApprovalRequestedEvent or ToolCallStartedEvent or ToolCallCompletedEvent).Select(e => e.GetType().Name));
        Assert.All(events.OfType<ToolCallStartedEvent>(), e => Assert.Equal(request.ToolExecutionId, e.ToolExecutionId));
        Assert.Equal(RunState.Completed, Assert.IsType<RunFinishedEvent>(events[^1]).State);
    }

    [DatabaseFact]
    public async Task CancelDuringAToolsRetryBackoff_TheRetryNeverRuns_TheSessionGoesOn()
    {
        var attempts = 0;
        var tool = new TestTool("flaky", (_, _, _) =>
        {
            Interlocked.Increment(ref attempts);
            throw new InvalidOperationException("down");
        });
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.ToolRetry.MaxAttempts = 3;
            o.ToolRetry.Jitter = 0.01;
        }, tools: tool);
        var agent = await h.AgentAsync(a => a with { Tools = ["flaky"] });
        h.Claude.Respond(r => r.LastUserText == "just say hi" ? FakeReply.Text("hi")
            : r.ToolResults.Count == 0 ? FakeReply.ToolUse("flaky", new { }) : FakeReply.Text("done: " + r.ToolResults[0].Content));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "go");
        // After the second failed attempt the third waits 2⁴ = 16 s: the cancel lands in that backoff.
        await Eventually.TrueAsync(() => Volatile.Read(ref attempts) >= 2, "the second attempt");
        await Eventually.TrueAsync(async () => (await h.Client.GetRunToolCallsAsync(runId)).Single().State == ToolExecutionState.Pending, "back to pending");
        await h.Client.CancelRunAsync(runId);
        var n = Volatile.Read(ref attempts);
        Assert.Equal(ToolExecutionState.Skipped, (await h.Client.GetRunToolCallsAsync(runId)).Single().State);
        var next = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "just say hi"), "the next run", s_timeout);
        Assert.Equal("hi", next.Text);
        Assert.Equal(n, Volatile.Read(ref attempts));
    }

    [DatabaseFact]
    public async Task CancelDuringAutoCompactionsSummary_EndsTheRunAndItsWatch_TheSessionGoesOn()
    {
        var summaries = 0;
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.AutoCompaction = true;
            o.Compaction = new CompactionOptions { MaxTokensForModel = 4_000, Trigger = 0.8, TargetTokens = 1_000, ProtectedTokens = 100, PreserveLastN = 0, UseTokenCountingApi = false };
        });
        h.Claude.Respond(request =>
        {
            if (!IsSummarizer(request))
            {
                return FakeReply.Text("noted");
            }

            // The first summary streams for ~10 s (the run is cancelled meanwhile); the next run's is written at once.
            var reply = FakeReply.Text(string.Concat(Enumerable.Repeat("summary text....", 40)));
            return Interlocked.Increment(ref summaries) == 1 ? reply with { EventDelay = TimeSpan.FromMilliseconds(250) } : reply;
        });
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "a long document: " + new string('d', 14_000)), "the first run");
        var runId = await h.Client.RunFastAsync(session, agent.Id, "and now?");
        await Eventually.TrueAsync(() => Volatile.Read(ref summaries) == 1, "the summariser is called");
        var watch = h.Client.WatchRunAsync(runId).GetAsyncEnumerator();
        await h.Client.CancelRunAsync(runId);
        var seen = new List<RunEvent>();
        while (await Eventually.WithinAsync(watch.MoveNextAsync().AsTask(), "the watch", s_timeout))
        {
            seen.Add(watch.Current);
        }

        await watch.DisposeAsync();
        Assert.Equal(RunState.Cancelled, Assert.IsType<RunFinishedEvent>(seen[^1]).State);
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "cancelled", s_timeout));
        Assert.Equal(AgentPgErrorCode.RunCancelled, ex.Code);
        var next = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "again?"), "the next run", s_timeout);
        Assert.Equal("noted", next.Text);
        // The cancelled run's compaction was never written; the next run compacted the session before its request.
        Assert.Equal(2, Volatile.Read(ref summaries));
        Assert.Equal("auto", Assert.Single(await h.Client.GetCompactionEventsAsync(session)).Reason);
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.True(messages[0].IsSummary);
    }
}
