using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

public sealed class CancelAndRegenerateTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task CancelRunAsync_Pending_CancelsAndWaitReportsRunCancelled()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunFastAsync(session, agent.Id, "never processed");

        await h.Client.CancelRunAsync(run);

        var cancelled = await h.Client.GetRunAsync(run);
        Assert.Equal(RunState.Cancelled, cancelled.State);
        Assert.Equal(RunState.Pending, cancelled.PreviousState);
        Assert.Equal("Run cancelled by user", cancelled.ErrorMessage);
        Assert.NotNull(cancelled.FinalizedAt);
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(run));
        Assert.Equal(AgentPgErrorCode.RunCancelled, ex.Code);
        Assert.Empty(await h.Client.GetMessagesAsync(session));

        // Idempotent on a final run.
        await h.Client.CancelRunAsync(run);
    }

    [DatabaseFact]
    public async Task CancelRunAsync_UnknownRun_ThrowsRunNotFound()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.CancelRunAsync(Guid.NewGuid()));
        Assert.Equal(AgentPgErrorCode.RunNotFound, ex.Code);
    }

    [DatabaseFact]
    public async Task CancelRunAsync_WhileStreaming_StopsTheStreamAndTheSessionStaysUsable()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var held = new HeldRequest(h.Claude, "long", request => FakeReply.Text("fresh answer to " + request.LastUserText));
        var run = await h.Client.RunFastAsync(session, agent.Id, "long");
        await Eventually.WithinAsync(held.Arrived, "the request to Claude");

        await h.Client.CancelRunAsync(run);

        await Eventually.WithinAsync(held.Aborted, "the in-flight stream to be cancelled");
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(run)).State);
        var next = await h.Client.RunFastSyncAsync(session, agent.Id, "next");
        // D22: the cancelled run's prompt stays in the session's history but is not part of what Claude sees next.
        Assert.Equal("fresh answer to next", next.Text);
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.Contains(messages, m => m.RunId == run && m.Role == MessageRole.User);
        Assert.DoesNotContain(messages, m => m.RunId == run && m.Role == MessageRole.Assistant);
    }

    [DatabaseFact]
    public async Task FailedRun_ItsTurnsStayInTheHistoryButAreNotSentWithTheNextRun()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        h.Claude.Respond(request => request.LastUserText == "doomed question"
            ? FakeReply.Error(400, "invalid_request_error", "refused")
            : FakeReply.Text($"answer to '{request.LastUserText}' after {request.Messages.GetArrayLength()} message(s)"));
        await h.Client.RunFastSyncAsync(session, agent.Id, "first question");
        var failed = await h.Client.RunFastAsync(session, agent.Id, "doomed question");
        await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(failed));

        var next = await h.Client.RunFastSyncAsync(session, agent.Id, "next question");

        // first question, its answer, next question: the failed run's lone prompt is left out, not merged into the next.
        Assert.Equal("answer to 'next question' after 3 message(s)", next.Text);
        Assert.Contains(await h.Client.GetMessagesAsync(session), m => m.RunId == failed && m.Role == MessageRole.User);
    }

    [DatabaseFact]
    public async Task CancelRunAsync_WithAToolMidExecution_FiresItsTokenRefusesTheLateResultAndKeepsHistoryValid()
    {
        var toolStarted = new TaskCompletionSource();
        var tokenFired = new TaskCompletionSource();
        var finishAnyway = new TaskCompletionSource();
        var toolFinished = new TaskCompletionSource();
        await using var h = await Harness.StartAsync(db, start: true, tools:
        [
            new TestTool("slow_tool", async (_, _, ct) =>
            {
                using var registration = ct.Register(() => tokenFired.TrySetResult());
                toolStarted.TrySetResult();
                // A tool that ignores its token and finishes later: its result must change nothing.
                await finishAnyway.Task;
                toolFinished.TrySetResult();
                return "late result";
            }),
            new TestTool("fast_tool", (_, _, _) => Task.FromResult("fast result")),
        ]);
        var agent = await h.AgentAsync(a => a with { Tools = ["slow_tool", "fast_tool"] });
        var session = await h.Client.NewSessionAsync();
        h.Claude.Respond(request => request.LastUserText == "use tools"
            ? FakeReply.Message(FakeContentBlock.ToolUse("fast_tool", new { }, "toolu_fast"), FakeContentBlock.ToolUse("slow_tool", new { }, "toolu_slow")) with { StopReason = "tool_use" }
            : FakeReply.Text("next answer"));
        var run = await h.Client.RunFastAsync(session, agent.Id, "use tools");
        await Eventually.WithinAsync(toolStarted.Task, "the slow tool to start");
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = $1 AND state = 'completed'", run) == 1, "the fast tool to complete");

        await h.Client.CancelRunAsync(run);

        await Eventually.WithinAsync(tokenFired.Task, "the slow tool's cancellation token");
        finishAnyway.SetResult();
        await Eventually.WithinAsync(toolFinished.Task, "the slow tool to return anyway");
        var calls = await h.Client.GetRunToolCallsAsync(run);
        Assert.Equal(ToolExecutionState.Completed, calls.Single(c => c.Name == "fast_tool").State);
        var slow = calls.Single(c => c.Name == "slow_tool");
        Assert.Equal(ToolExecutionState.Skipped, slow.State);
        Assert.Equal("", slow.Output);

        // Every tool_use has its tool_result: the real one for the finished tool, "cancelled" for the other.
        var messages = await h.Client.GetMessagesAsync(session);
        var results = messages.Last(m => m.RunId == run).Content;
        Assert.Equal(["toolu_fast", "toolu_slow"], results.Select(b => b.ToolResultForUseId));
        Assert.Equal("fast result", results[0].ToolContent);
        Assert.False(results[0].IsError);
        Assert.Equal("cancelled", results[1].ToolContent);
        Assert.True(results[1].IsError);

        // The fake Claude validates tool_use/tool_result pairing: the next run of the session is accepted.
        Assert.Equal("next answer", (await h.Client.RunFastSyncAsync(session, agent.Id, "and now?")).Text);
        Assert.Equal(ToolExecutionState.Skipped, (await h.Client.GetRunToolCallsAsync(run)).Single(c => c.Name == "slow_tool").State);
    }

    [DatabaseFact]
    public async Task CancelRunAsync_ChildAlone_TheParentContinuesWithAnErrorResult()
    {
        await using var h = await Harness.StartAsync(db);
        var childAgent = await h.AgentAsync(a => a with { SystemPrompt = "child" });
        var parentAgent = await h.AgentAsync(a => a with { SystemPrompt = "parent", AgentIds = [childAgent.Id] });
        var childStreaming = new HeldRequest(h.Claude, request => request.SystemText == "child", request => request.ToolResults.Count == 0
            ? FakeReply.ToolUse(childAgent.Name, new { task = "sub task" })
            : FakeReply.Text($"parent saw: {request.ToolResults[0].Content} error={request.ToolResults[0].IsError}"));
        var parent = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), parentAgent.Id, "delegate");
        await Eventually.WithinAsync(childStreaming.Arrived, "the child run to stream");
        var child = (await h.Client.GetRunToolCallsAsync(parent)).Single().ChildRunId!.Value;

        await h.Client.CancelRunAsync(child);

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(parent), "the parent to continue");
        Assert.Equal("parent saw: Run cancelled by user error=True", response.Text);
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(child)).State);
    }

    [DatabaseFact]
    public async Task CancelRunAsync_Parent_CancelsItsRunningChildren()
    {
        await using var h = await Harness.StartAsync(db);
        var childAgent = await h.AgentAsync(a => a with { SystemPrompt = "child" });
        var parentAgent = await h.AgentAsync(a => a with { SystemPrompt = "parent", AgentIds = [childAgent.Id] });
        var childStreaming = new HeldRequest(h.Claude, request => request.SystemText == "child",
            _ => FakeReply.ToolUse(childAgent.Name, new { task = "sub task" }));
        var session = await h.Client.NewSessionAsync();
        var parent = await h.Client.RunFastAsync(session, parentAgent.Id, "delegate");
        await Eventually.WithinAsync(childStreaming.Arrived, "the child run to stream");
        var child = (await h.Client.GetRunToolCallsAsync(parent)).Single().ChildRunId!.Value;

        await h.Client.CancelRunAsync(parent);

        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(child)).State);
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(parent)).State);
        var lastParentMessage = (await h.Client.GetMessagesAsync(session)).Last(m => m.RunId == parent);
        Assert.Equal(ContentTypes.ToolResult, Assert.Single(lastParentMessage.Content).Type);
    }

    [DatabaseTheory]
    [InlineData("completed")]
    [InlineData("failed")]
    [InlineData("cancelled")]
    public async Task RegenerateRunAsync_FinalRun_ReplacesItsMessagesWithANewRun(string outcome)
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var options = new RunOptions { Variables = new Dictionary<string, object?> { ["k"] = "v" }, AppendInstructions = "Extra." };
        Guid original;
        if (outcome == "cancelled")
        {
            var stuck = new TaskCompletionSource();
            h.Claude.Respond(async (_, ct) =>
            {
                stuck.TrySetResult();
                await new TaskCompletionSource().Task.WaitAsync(ct);
                return null;
            });
            original = await h.Client.RunFastAsync(session, agent.Id, "the question", options);
            await Eventually.WithinAsync(stuck.Task, "the first request");
            await h.Client.CancelRunAsync(original);
        }
        else
        {
            h.Claude.Enqueue(outcome == "completed" ? FakeReply.Text("first answer") : FakeReply.Error(400, "invalid_request_error", "bad"));
            original = await h.Client.RunFastAsync(session, agent.Id, "the question", options);
            await Assert.ThrowsAnyAsync<Exception>(async () =>
            {
                await h.Client.WaitForRunAsync(original);
                throw new InvalidOperationException("completed");
            });
        }

        h.Claude.Respond(_ => FakeReply.Text("second answer"));
        var regenerated = await h.Client.RegenerateRunAsync(original);
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(regenerated), "the regenerated run");

        Assert.NotEqual(original, regenerated);
        Assert.Equal("second answer", response.Text);
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.All(messages, m => Assert.Equal(regenerated, m.RunId));
        Assert.Equal(["the question", "second answer"], messages.Select(m => m.Content[0].Text));
        var run = await h.Client.GetRunAsync(regenerated);
        Assert.Equal("v", run.Variables["k"]);
        Assert.Equal("Extra.", run.AppendInstructions);
        Assert.Equal(RunMode.Streaming, run.RunMode);
        Assert.Equal(0, run.Depth);
        Assert.True((await h.Client.GetRunAsync(original)).State.IsTerminal());
    }

    [DatabaseFact]
    public async Task RegenerateRunAsync_RunningRun_IsRefused()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "pending");

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RegenerateRunAsync(run));

        Assert.Equal(AgentPgErrorCode.InvalidStateTransition, ex.Code);
        var missing = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RegenerateRunAsync(Guid.NewGuid()));
        Assert.Equal(AgentPgErrorCode.RunNotFound, missing.Code);
        await h.Client.CancelRunAsync(run);
    }

    [DatabaseFact]
    public async Task RegenerateRunAsync_NotTheLatestRootRun_IsRefusedAndChangesNothing()
    {
        // Review D15: regenerating A after B removed A's turns from the middle and appended A' after B.
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(request => FakeReply.Text("answer to " + request.LastUserText));
        var session = await h.Client.NewSessionAsync();
        var a = await h.Client.RunFastAsync(session, agent.Id, "A");
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(a), "run A");
        var b = await h.Client.RunFastAsync(session, agent.Id, "B");
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(b), "run B");

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RegenerateRunAsync(a));

        Assert.Equal(AgentPgErrorCode.InvalidStateTransition, ex.Code);
        Assert.Contains("latest root run", ex.Message, StringComparison.Ordinal);
        Assert.Equal(["A", "answer to A", "B", "answer to B"], (await h.Client.GetMessagesAsync(session)).Select(m => m.Content.Single().Text));
        var regenerated = await h.Client.RegenerateRunAsync(b);
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(regenerated), "the regenerated run B");
        Assert.Equal(["A", "answer to A", "B", "answer to B"], (await h.Client.GetMessagesAsync(session)).Select(m => m.Content.Single().Text));
    }

    [DatabaseFact]
    public async Task RegenerateRunAsync_ChildRun_IsRefused()
    {
        await using var h = await Harness.StartAsync(db);
        var child = await h.AgentAsync(a => a with { SystemPrompt = "You are the child." });
        var parent = await h.AgentAsync(a => a with { SystemPrompt = "You are the parent.", AgentIds = [child.Id] });
        h.Claude.Respond(request => request.SystemText.Contains("the child", StringComparison.Ordinal)
            ? FakeReply.Text("child done")
            : request.ToolResults.Count == 0
                ? FakeReply.ToolUse(child.Name, new { task = "sub task" }) with { StopReason = "tool_use" }
                : FakeReply.Text("parent done"));
        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), parent.Id, "go"), "the parent run");
        var childRun = Assert.Single(response.ToolCalls).ChildRunId!.Value;

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RegenerateRunAsync(childRun));

        Assert.Equal(AgentPgErrorCode.InvalidStateTransition, ex.Code);
        Assert.Contains("child run", ex.Message, StringComparison.Ordinal);
    }
}
