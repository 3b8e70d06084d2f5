using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Approvals;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

/// <summary><see cref="ApprovalRequestedEvent"/> through <see cref="AgentPgClient.WatchRunAsync"/> (issue 15 item 7).</summary>
public sealed class WatchRunApprovalTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    /// <summary>Reads events until one matches (or the stream ends), with a deadline.</summary>
    private static async Task<T> NextAsync<T>(IAsyncEnumerator<RunEvent> events, List<RunEvent> seen, string what) where T : RunEvent
    {
        while (await Eventually.WithinAsync(events.MoveNextAsync().AsTask(), what, s_timeout))
        {
            seen.Add(events.Current);
            if (events.Current is T found)
            {
                return found;
            }
        }

        throw new Xunit.Sdk.XunitException($"The stream ended without {what}; it had: {string.Join(", ", seen.Select(e => e.GetType().Name))}");
    }

    private static void AssertStrictlyIncreasing(IReadOnlyList<RunEvent> events)
    {
        for (var i = 1; i < events.Count; i++)
        {
            Assert.True(events[i].Sequence > events[i - 1].Sequence, $"sequence {events[i].Sequence} after {events[i - 1].Sequence}");
        }
    }

    /// <summary>A started harness whose agent asks for a refund that needs approval (<paramref name="approvals"/>), a
    /// never-started watcher client, and the run, created.</summary>
    private async Task<(Harness H, AgentPgClient Watcher, Guid Session, Guid RunId)> StartRefundRunAsync(Refunds refunds, string approvals)
    {
        var h = await Harness.StartAsync(db, tools: refunds.Tool());
        try
        {
            var watcher = await h.AddClientAsync(start: false);
            var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = [approvals] });
            h.Claude.Respond(r => Refunds.Script(r));
            var session = await h.Client.NewSessionAsync();
            return (h, watcher, session, await h.Client.RunFastAsync(session, agent.Id, "refund order A-1"));
        }
        catch
        {
            await h.DisposeAsync();
            throw;
        }
    }

    [DatabaseFact]
    public async Task WatchRun_ApprovalRequested_ArrivesBeforeTheDecision_ThenTheToolStartsAndCompletesAfterTheApproval()
    {
        var refunds = new Refunds();
        var (h, watcher, session, runId) = await StartRefundRunAsync(refunds, "issue_refund");
        await using var harness = h;

        var seen = new List<RunEvent>();
        await using var events = watcher.WatchRunAsync(runId).GetAsyncEnumerator();
        var requested = await NextAsync<ApprovalRequestedEvent>(events, seen, "the approval request");

        // Nobody decided yet: the request is pending, the tool has not run, no start or completion was streamed.
        Assert.Equal(requested.ToolExecutionId, Assert.Single(await watcher.GetPendingApprovalsAsync(session)).ToolExecutionId);
        Assert.Empty(refunds.Calls);
        Assert.DoesNotContain(seen, e => e is ToolCallStartedEvent or ToolCallCompletedEvent);
        Assert.Equal(runId, requested.RunId);
        Assert.Equal(runId, requested.RootRunId);
        Assert.Equal(session, requested.SessionId);
        Assert.Equal(0, requested.Depth);
        Assert.Equal("issue_refund", requested.ToolName);
        Assert.Equal(40, requested.Input.GetProperty("amount").GetInt32());
        Assert.Contains(seen, e => e is MessageStoredEvent { Message.Role: MessageRole.Assistant });

        // An edited approval: the start carries the edit, the request keeps what Claude asked for.
        await watcher.ApproveToolCallAsync(requested.ToolExecutionId, JsonSerializer.SerializeToElement(new { order = "A-1", amount = 10 }));
        var started = await NextAsync<ToolCallStartedEvent>(events, seen, "the tool call's start after the approval");
        var completed = await NextAsync<ToolCallCompletedEvent>(events, seen, "the tool call's completion");
        var finished = await NextAsync<RunFinishedEvent>(events, seen, "the run's finish");
        Assert.False(await events.MoveNextAsync());

        Assert.Equal(requested.ToolExecutionId, started.ToolExecutionId);
        Assert.Equal(10, started.Input.GetProperty("amount").GetInt32());
        Assert.Equal(requested.ToolExecutionId, completed.ToolExecutionId);
        Assert.False(completed.IsError);
        Assert.Equal("refunded 10 on A-1", completed.Output);
        // The edited input is announced to Claude ahead of the tool's output (docs/approvals.md).
        Assert.StartsWith("The approver changed the input of this call before it ran;", finished.Response!.Text, StringComparison.Ordinal);
        Assert.EndsWith("\n\nrefunded 10 on A-1", finished.Response!.Text, StringComparison.Ordinal);
        Assert.Single(refunds.Calls);
        Assert.Single(seen.OfType<ApprovalRequestedEvent>());
        AssertStrictlyIncreasing(seen);

        // A late watcher of the finished run gets the same request, at the same place.
        var replay = await Eventually.WithinAsync(Collect(h.Client.WatchRunAsync(runId)), "the replay", s_timeout);
        Assert.Equal(seen.Select(e => (e.Sequence, e.GetType())), replay.Select(e => (e.Sequence, e.GetType())));
        Assert.Equal(40, Assert.Single(replay.OfType<ApprovalRequestedEvent>()).Input.GetProperty("amount").GetInt32());
    }

    [DatabaseFact]
    public async Task WatchRun_ApprovalRejected_TheCallCompletesAsAnErrorWithTheReasonAndNeverStarts()
    {
        var refunds = new Refunds();
        var (h, watcher, session, runId) = await StartRefundRunAsync(refunds, "*");
        await using var harness = h;

        var seen = new List<RunEvent>();
        await using var events = watcher.WatchRunAsync(runId).GetAsyncEnumerator();
        var requested = await NextAsync<ApprovalRequestedEvent>(events, seen, "the approval request");
        await watcher.RejectToolCallAsync(requested.ToolExecutionId, "already refunded");
        var completed = await NextAsync<ToolCallCompletedEvent>(events, seen, "the rejected call's completion");
        var finished = await NextAsync<RunFinishedEvent>(events, seen, "the run's finish");

        Assert.Equal(requested.ToolExecutionId, completed.ToolExecutionId);
        Assert.True(completed.IsError);
        Assert.Contains("already refunded", completed.Output, StringComparison.Ordinal);
        Assert.DoesNotContain(seen, e => e is ToolCallStartedEvent);
        Assert.Equal("ERROR The tool call was rejected by the approver: already refunded", finished.Response!.Text);
        Assert.Empty(refunds.Calls);
        AssertStrictlyIncreasing(seen);
    }

    [DatabaseFact]
    public async Task WatchRun_ResumedAfterTheApprovalRequest_GetsExactlyTheRemainder_AndAFirstWatchWhileWaitingReplaysTheRequest()
    {
        var refunds = new Refunds();
        var (h, watcher, session, runId) = await StartRefundRunAsync(refunds, "issue_refund");
        await using var harness = h;
        var pending = await Refunds.PendingAsync(watcher, session, s_timeout);

        // Nobody watched the run before: the first watch back-fills the request from the stored execution.
        var first = new List<RunEvent>();
        await using (var events = watcher.WatchRunAsync(runId).GetAsyncEnumerator())
        {
            var requested = await NextAsync<ApprovalRequestedEvent>(events, first, "the back-filled approval request");
            Assert.Equal(pending.ToolExecutionId, requested.ToolExecutionId);
            Assert.Equal(40, requested.Input.GetProperty("amount").GetInt32());
        }

        // The watcher went away after the request; the decision is taken meanwhile; it resumes after what it saw.
        await h.Client.ApproveToolCallAsync(pending.ToolExecutionId);
        var rest = await Eventually.WithinAsync(Collect(watcher.WatchRunAsync(runId, first[^1].Sequence)), "the resumed watch", s_timeout);

        Assert.All(rest, e => Assert.True(e.Sequence > first[^1].Sequence));
        Assert.DoesNotContain(rest, e => e is ApprovalRequestedEvent);
        Assert.Equal(pending.ToolExecutionId, Assert.Single(rest.OfType<ToolCallStartedEvent>()).ToolExecutionId);
        Assert.Equal(pending.ToolExecutionId, Assert.Single(rest.OfType<ToolCallCompletedEvent>()).ToolExecutionId);
        Assert.IsType<RunFinishedEvent>(rest[^1]);
        var all = await Eventually.WithinAsync(Collect(watcher.WatchRunAsync(runId)), "the full replay", s_timeout);
        Assert.Equal(all.Select(e => e.Sequence), first.Concat(rest).Select(e => e.Sequence));
        Assert.Single(refunds.Calls);
    }

    [DatabaseFact]
    public async Task WatchRun_ApprovalRequestedByAChildRunsTool_ReachesTheRootsWatcherWithTheChildsRunAndDepth()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var watcher = await h.AddClientAsync(start: false);
        string boss = "boss_" + Guid.NewGuid().ToString("N")[..6], clerk = "clerk_" + Guid.NewGuid().ToString("N")[..6];
        var clerkAgent = await h.AgentAsync(a => a with { Name = clerk, SystemPrompt = clerk, Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        var bossAgent = await h.AgentAsync(a => a with { Name = boss, SystemPrompt = boss, Tools = [], AgentIds = [clerkAgent.Id] });
        h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text(r.SystemText + " got: " + r.ToolResults[0].Content)
            : r.SystemText == boss ? FakeReply.ToolUse(clerk, new { task = "refund A-1" }) : Refunds.Script(r));
        var session = await h.Client.NewSessionAsync();
        var rootId = await h.Client.RunFastAsync(session, bossAgent.Id, "handle the refund");

        var seen = new List<RunEvent>();
        await using var events = watcher.WatchRunAsync(rootId).GetAsyncEnumerator();
        var requested = await NextAsync<ApprovalRequestedEvent>(events, seen, "the child's approval request");
        var childId = Assert.Single(seen.OfType<ToolCallStartedEvent>()).ChildRunId;
        Assert.Equal(childId, requested.RunId);
        Assert.Equal(rootId, requested.RootRunId);
        Assert.Equal(1, requested.Depth);

        await watcher.ApproveToolCallAsync(requested.ToolExecutionId);
        var finished = await NextAsync<RunFinishedEvent>(events, seen, "the child's finish");
        Assert.Equal(childId, finished.RunId);
        finished = await NextAsync<RunFinishedEvent>(events, seen, "the root's finish");
        Assert.Equal($"{boss} got: {clerk} got: refunded 40 on A-1", finished.Response!.Text);

        // A watcher of the child run alone sees the request too.
        var child = await Eventually.WithinAsync(Collect(watcher.WatchRunAsync(childId!.Value)), "the child's replay", s_timeout);
        Assert.Equal(requested.Sequence, Assert.Single(child.OfType<ApprovalRequestedEvent>()).Sequence);
    }

    private static async Task<List<RunEvent>> Collect(IAsyncEnumerable<RunEvent> events)
    {
        var list = new List<RunEvent>();
        await foreach (var e in events)
        {
            list.Add(e);
        }

        return list;
    }
}
