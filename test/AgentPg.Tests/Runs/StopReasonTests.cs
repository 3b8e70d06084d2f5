using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

public sealed class StopReasonTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseTheory]
    [InlineData("end_turn")]
    [InlineData("stop_sequence")]
    [InlineData("max_tokens")]
    [InlineData("refusal")]
    public async Task TextAnswer_CompletesWithTheStopReasonReported(string stopReason)
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("partial or full answer") with { StopReason = stopReason, StopSequence = stopReason == "stop_sequence" ? "END" : null });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        Assert.Equal(stopReason, response.StopReason);
        Assert.Equal("partial or full answer", response.Text);
        Assert.Equal(RunState.Completed, (await h.Client.GetRunAsync(response.RunId)).State);
    }

    [DatabaseFact]
    public async Task MaxTokensWithTruncatedToolUse_NeverExecutesThePartialCallAndRetriesWithDoubledMaxTokens()
    {
        var notes = new NoteTool();
        await using var h = await Harness.StartAsync(db, tools: notes);
        var agent = await h.AgentAsync(a => a with { MaxTokens = 1000 });
        h.Claude.Enqueue(
            FakeReply.Message(FakeContentBlock.Text("Saving."), FakeContentBlock.TruncatedToolUse("save_note", "{\"text\": \"a very long no")) with { StopReason = "max_tokens" },
            FakeReply.Message(FakeContentBlock.ToolUse("save_note", new { text = "a very long note" })) with { StopReason = "tool_use" },
            FakeReply.Text("Saved your note."));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "save a long note");

        Assert.Equal("Saved your note.", response.Text);
        Assert.Equal(["a very long note"], notes.Saved);
        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
        // Only the repeated iteration gets the doubled budget; the next one is back to the agent's setting.
        Assert.Equal([1000L, 2000L, 1000L], requests.Select(r => r.Body!.Value.GetProperty("max_tokens").GetInt64()));
        // The truncated answer never entered the conversation.
        Assert.Equal(1, requests[1].Body!.Value.GetProperty("messages").GetArrayLength());
        var iterations = await h.Client.GetIterationsAsync(response.RunId);
        Assert.Equal(["user_prompt", "continuation", "tool_results"], iterations.Select(i => i.TriggerType));
        Assert.Equal("truncated_tool_use", iterations[0].ErrorType);
        Assert.Equal(1, (await h.Client.GetRunAsync(response.RunId)).ContinuationCount);
        Assert.Single(response.ToolCalls);
    }

    // Fine-grained tool streaming (eager_input_streaming) streams a tool's input without Claude's validation, so an answer that
    // ends normally (tool_use) can still carry input that is not JSON. Before, such a tool_use was left without a tool_result:
    // the next request of the session was refused by the API (here: by the fake's validator) and the session was stuck.
    [DatabaseFact]
    public async Task InvalidToolInputJson_WithoutMaxTokens_IsAnsweredWithAnErrorAndTheToolIsNotCalled()
    {
        var notes = new NoteTool();
        await using var h = await Harness.StartAsync(db, tools: notes);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(
            FakeReply.Message(
                FakeContentBlock.TruncatedToolUse("save_note", "{\"text\": \"unterminated", id: "toolu_bad"),
                FakeContentBlock.ToolUse("save_note", new { text = "a good note" }, id: "toolu_good")) with { StopReason = "tool_use" },
            FakeReply.Text("One saved, one failed."),
            FakeReply.Text("Still talking."));
        var session = await h.Client.NewSessionAsync();

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "save two notes");

        Assert.Equal("One saved, one failed.", response.Text);
        Assert.Equal(["a good note"], notes.Saved);
        var call = Assert.Single(response.ToolCalls, c => c.IsError);
        Assert.Contains("not valid JSON", call.ErrorMessage, StringComparison.Ordinal);
        var second = h.Claude.Requests.Where(r => r.IsMessagesCall).ElementAt(1).Body!.Value.GetProperty("messages");
        // The assistant turn keeps the tool_use with its text as Claude wrote it, wrapped in an object (the API takes only
        // objects as input), and every tool_use has its tool_result.
        var badUse = second[1].GetProperty("content").EnumerateArray().Single(b => b.GetProperty("id").GetString() == "toolu_bad");
        Assert.Equal("{\"text\": \"unterminated", badUse.GetProperty("input").GetProperty("INVALID_JSON").GetString());
        var results = second[2].GetProperty("content").EnumerateArray().ToList();
        Assert.Equal(["toolu_bad", "toolu_good"], results.Select(r => r.GetProperty("tool_use_id").GetString()).Order());
        Assert.True(results.Single(r => r.GetProperty("tool_use_id").GetString() == "toolu_bad").GetProperty("is_error").GetBoolean());

        // The session goes on.
        Assert.Equal("Still talking.", (await h.Client.RunFastSyncAsync(session, agent.Id, "and now?")).Text);
    }

    // The same answer as the only tool call: before, the run completed with the tool_use unanswered.
    [DatabaseFact]
    public async Task InvalidToolInputJson_AsTheOnlyCall_IsAnsweredAndTheRunGoesOn()
    {
        var notes = new NoteTool();
        await using var h = await Harness.StartAsync(db, tools: notes);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(
            FakeReply.Message(FakeContentBlock.TruncatedToolUse("save_note", "{\"text\": tru")) with { StopReason = "tool_use" },
            FakeReply.Text("Sorry, let me retry later."));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "save a note");

        Assert.Equal("Sorry, let me retry later.", response.Text);
        Assert.Empty(notes.Saved);
        Assert.Equal(2, response.IterationCount);
        Assert.True(Assert.Single(response.ToolCalls).IsError);
    }

    [DatabaseFact]
    public async Task PauseTurn_ContinuesWithThePausedTurnSentBackAsIs()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(
            FakeReply.Text("Searching the web...") with { StopReason = "pause_turn" },
            FakeReply.Text("Found it: 42."));
        var session = await h.Client.NewSessionAsync();

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "look it up");

        Assert.Equal("Found it: 42.", response.Text);
        var second = h.Claude.Requests.Where(r => r.IsMessagesCall).ElementAt(1).Body!.Value.GetProperty("messages");
        Assert.Equal(2, second.GetArrayLength());
        Assert.Equal("assistant", second[1].GetProperty("role").GetString());
        Assert.Equal("Searching the web...", second[1].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(["user_prompt", "continuation"], (await h.Client.GetIterationsAsync(response.RunId)).Select(i => i.TriggerType));
        Assert.Equal(2, response.IterationCount);
    }

    [DatabaseFact]
    public async Task PauseTurn_BeyondMaxContinuations_FailsWithAClearError()
    {
        await using var h = await Harness.StartAsync(db, o => o.MaxContinuations = 2);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("still working") with { StopReason = "pause_turn" });

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"));

        Assert.Equal(AgentPgErrorCode.RunFailed, ex.Code);
        Assert.Equal("continuation_limit", ex.Context["error_type"]);
        Assert.Contains("MaxContinuations = 2", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, h.Claude.Requests.Count(r => r.IsMessagesCall));
    }

    [DatabaseFact]
    public async Task ModelContextWindowExceeded_FailsWithAClearError()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("cut") with { StopReason = "model_context_window_exceeded" });

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"));

        Assert.Equal("context_window_exceeded", ex.Context["error_type"]);
        Assert.Contains("ExtendedContext", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task PromptTooLong_WithoutExtendedContext_FailsSayingHowToFixIt()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { ContextWindow = 30 });
        var agent = await h.AgentAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await
            h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, new string('x', 400)));

        Assert.Equal("context_window_exceeded", ex.Context["error_type"]);
        Assert.Contains("prompt is too long", ex.Message, StringComparison.Ordinal);
        Assert.Contains("extended_context", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task PromptTooLong_WithExtendedContextOnTheAgent_RetriesWithThe1MBeta()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { ContextWindow = 30 });
        var agent = await h.AgentAsync(a => a with { Config = new Dictionary<string, object?> { ["extended_context"] = true } });
        h.Claude.Enqueue(FakeReply.Text("read it all"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, new string('x', 400));

        Assert.Equal("read it all", response.Text);
        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
        Assert.Equal(2, requests.Count);
        Assert.DoesNotContain("context-1m-2025-08-07", requests[0].Betas);
        Assert.Contains("context-1m-2025-08-07", requests[1].Betas);
    }

    [DatabaseFact]
    public async Task ErrorInsideTheStream_IsRetriedThenSucceeds()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(
            FakeReply.Text("partial") with { StreamFault = FakeStreamFault.Error(3) },
            FakeReply.Text("second try works"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        Assert.Equal("second try works", response.Text);
        Assert.Equal(2, h.Claude.Requests.Count(r => r.IsMessagesCall));
        Assert.Equal(1, response.IterationCount);
    }

    [DatabaseFact]
    public async Task StreamThatFailedMidWay_ItsKnownUsageIsCountedInTheRunAndIteration()
    {
        // The failed attempt was paid for: message_start reported 1000 input tokens (and 1 output token) before the error.
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions(), o => o.PromptCaching = PromptCacheMode.Off);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(
            FakeReply.Text("partial") with { StreamFault = FakeStreamFault.Error(3), Usage = new FakeUsage { InputTokens = 1000, OutputTokens = 50 } },
            FakeReply.Text("second try works") with { Usage = new FakeUsage { InputTokens = 1000, OutputTokens = 5 } });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        Assert.Equal("second try works", response.Text);
        var run = await h.Client.GetRunAsync(response.RunId);
        Assert.Equal(2000, run.Usage.InputTokens);
        Assert.Equal(6, run.Usage.OutputTokens);
        var iteration = Assert.Single(await h.Client.GetIterationsAsync(response.RunId));
        Assert.Equal(2000, iteration.Usage.InputTokens);
        Assert.Equal(6, iteration.Usage.OutputTokens);
    }

    [DatabaseFact]
    public async Task StreamThatFailedEveryTime_TheFailedRunCarriesTheUsageOfEveryAttempt()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions(), o =>
        {
            o.MaxModelRetries = 1;
            o.PromptCaching = PromptCacheMode.Off;
        });
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("partial") with { StreamFault = FakeStreamFault.Disconnect(3), Usage = new FakeUsage { InputTokens = 700 } });
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(runId));

        Assert.Equal("model_error", ex.Context["error_type"]);
        Assert.Equal(1400, (await h.Client.GetRunAsync(runId)).Usage.InputTokens);
    }

    [DatabaseFact]
    public async Task ErrorInsideTheStreamEveryTime_WithoutWaitingForClaude_FailsAfterMaxModelRetriesWithAClearError()
    {
        // ModelUnavailableTimeout zero: an overloaded_error is retried like a broken stream, MaxModelRetries times
        // (ModelUnavailableTests: the default waits).
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.MaxModelRetries = 2;
            o.ModelUnavailableTimeout = TimeSpan.Zero;
        });
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("partial") with { StreamFault = FakeStreamFault.Error(2, "overloaded_error", "Overloaded") });

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"));

        Assert.Equal("model_error", ex.Context["error_type"]);
        Assert.Contains("failed 3 times", ex.Message, StringComparison.Ordinal);
        Assert.Contains("overloaded_error: Overloaded", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, h.Claude.Requests.Count(r => r.IsMessagesCall));
    }

    [DatabaseFact]
    public async Task DroppedConnectionMidStream_IsRetried()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("partial") with { StreamFault = FakeStreamFault.Disconnect(3) }, FakeReply.Text("recovered"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        Assert.Equal("recovered", response.Text);
    }

    [DatabaseFact]
    public async Task HttpErrorThatIsNotRetryable_FailsTheRunWithTheApiMessage()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Error(400, "invalid_request_error", "messages: something is off"));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"));

        Assert.Equal("model_error", ex.Context["error_type"]);
        Assert.Contains("400 invalid_request_error: messages: something is off", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain(h.Claude.ApiKey, ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task ThinkingAndRedactedThinking_AreStoredLosslesslyAndSentBackVerbatim()
    {
        await using var h = await Harness.StartAsync(db, tools: new TestTool("lookup"));
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"] });
        h.Claude.Enqueue(
            FakeReply.Message(
                FakeContentBlock.Thinking("I should look this up.", "sig-abc123"),
                FakeContentBlock.RedactedThinking("ENCRYPTED=="),
                FakeContentBlock.ToolUse("lookup", new { }, "toolu_l1")) with { StopReason = "tool_use" },
            FakeReply.Text("Looked it up."));
        var session = await h.Client.NewSessionAsync();

        await h.Client.RunFastSyncAsync(session, agent.Id, "think");

        var assistant = (await h.Client.GetMessagesAsync(session))[1];
        Assert.Equal([ContentTypes.Thinking, ContentTypes.RedactedThinking, ContentTypes.ToolUse], assistant.Content.Select(b => b.Type));
        Assert.Equal("I should look this up.", assistant.Content[0].Text);
        Assert.Equal("sig-abc123", assistant.Content[0].Signature);
        Assert.Equal("ENCRYPTED==", assistant.Content[1].Raw!.Value.GetProperty("data").GetString());

        var sent = h.Claude.Requests.Where(r => r.IsMessagesCall).ElementAt(1).Body!.Value.GetProperty("messages")[1].GetProperty("content");
        Assert.Equal("thinking", sent[0].GetProperty("type").GetString());
        Assert.Equal("sig-abc123", sent[0].GetProperty("signature").GetString());
        Assert.Equal("I should look this up.", sent[0].GetProperty("thinking").GetString());
        Assert.Equal("ENCRYPTED==", sent[1].GetProperty("data").GetString());
    }

    [DatabaseFact]
    public async Task AgentParametersAndInstructions_AreSentAsTheRequestFields()
    {
        await using var h = await Harness.StartAsync(db);
        // Sonnet 4 takes temperature and top_p together (Sonnet 4.5 and later models take one of them).
        var agent = await h.AgentAsync(a => a with { Model = "claude-sonnet-4-20250514", SystemPrompt = "Base prompt.", Temperature = 0.3, TopK = 20, TopP = 0.8, MaxTokens = 777 });
        h.Claude.Respond(_ => FakeReply.Text("ok"));

        await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "a", new RunOptions { AppendInstructions = "Be formal." });
        await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "b", new RunOptions { OverrideInstructions = "Only this.", AppendInstructions = "ignored" });

        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).Select(r => r.Body!.Value).ToList();
        Assert.Equal("Base prompt.\n\nBe formal.", RequestBodies.SystemText(requests[0]));
        Assert.Equal("Only this.", RequestBodies.SystemText(requests[1]));
        Assert.Equal(0.3, requests[0].GetProperty("temperature").GetDouble(), 5);
        Assert.Equal(20, requests[0].GetProperty("top_k").GetInt32());
        Assert.Equal(0.8, requests[0].GetProperty("top_p").GetDouble(), 5);
        Assert.Equal(777, requests[0].GetProperty("max_tokens").GetInt32());
        Assert.Equal("claude-sonnet-4-20250514", requests[0].GetProperty("model").GetString());
        Assert.False(requests[0].TryGetProperty("tools", out _));
    }
}
