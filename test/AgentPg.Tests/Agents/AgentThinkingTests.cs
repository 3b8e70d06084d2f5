using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Agents;

/// <summary>An agent's extended thinking and effort (AgentDefinition.Thinking, Effort): checked when the agent is written,
/// stored with it, and sent on every model call of its runs, streaming and batched, with Claude's thinking blocks streamed,
/// stored and sent back unchanged.</summary>
public sealed class AgentThinkingTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static TestTool Lookup() => new("lookup", (_, _, _) => Task.FromResult("found it"));

    private static string Thinking(JsonElement body) => body.GetProperty("thinking").GetRawText();

    /// <summary>Watches the run to its end, releasing <paramref name="watched"/> once the instance knows of the watch (so the answer
    /// Claude holds back until then streams as deltas); the events the watch delivered.</summary>
    private static async Task<List<RunEvent>> WatchToTheEndAsync(Harness h, Guid runId, TaskCompletionSource watched)
    {
        var events = new List<RunEvent>();
        var watch = Task.Run(async () =>
        {
            await foreach (var e in h.Client.WatchRunAsync(runId))
            {
                events.Add(e);
                if (!watched.Task.IsCompleted)
                {
                    await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the instance learns of the watch", s_timeout);
                    watched.TrySetResult();
                }
            }
        });
        await Eventually.WithinAsync(watch, "the watch to end with the run", s_timeout);
        return events;
    }

    private static string Effort(JsonElement body) => body.GetProperty("output_config").GetProperty("effort").GetString()!;

    [DatabaseFact]
    public async Task ThinkingAndEffort_AreStoredWithTheAgent_AndReturnedByGetListAndUpdate()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var created = await h.AgentAsync(a => a with { Thinking = AgentThinking.Enabled(2048), Effort = AgentEffort.High, MaxTokens = 8192 });

        Assert.Equal(AgentThinking.Enabled(2048), created.Thinking);
        Assert.Equal(AgentThinkingType.Enabled, created.Thinking!.Type);
        Assert.Equal(2048, created.Thinking.BudgetTokens);
        Assert.Equal(AgentEffort.High, created.Effort);
        var read = await h.Client.GetAgentByIdAsync(created.Id);
        Assert.Equal(AgentThinking.Enabled(2048), read.Thinking);
        Assert.Equal(AgentEffort.High, read.Effort);
        var listed = Assert.Single((await h.Client.ListAgentsAsync(limit: 1000)).Agents, a => a.Id == created.Id);
        Assert.Equal(AgentThinking.Enabled(2048), listed.Thinking);

        await h.Client.UpdateAgentAsync(read with { Thinking = AgentThinking.Adaptive, Effort = AgentEffort.ExtraHigh });
        read = await h.Client.GetAgentByIdAsync(created.Id);
        Assert.Same(AgentThinking.Adaptive, read.Thinking);
        Assert.Equal(AgentEffort.ExtraHigh, read.Effort);

        await h.Client.UpdateAgentAsync(read with { Thinking = AgentThinking.Disabled, Effort = null });
        read = await h.Client.GetAgentByIdAsync(created.Id);
        Assert.Equal(AgentThinkingType.Disabled, read.Thinking!.Type);
        Assert.Null(read.Effort);

        await h.Client.UpdateAgentAsync(read with { Thinking = null });
        Assert.Null((await h.Client.GetAgentByIdAsync(created.Id)).Thinking);
    }

    [Fact]
    public void WithDisplay_KeepsTheThinking_AndDisabledThinkingTakesNone()
    {
        var summarized = AgentThinking.Adaptive.WithDisplay(AgentThinkingDisplay.Summarized);
        Assert.Equal(AgentThinkingType.Adaptive, summarized.Type);
        Assert.Equal(AgentThinkingDisplay.Summarized, summarized.Display);
        Assert.Null(AgentThinking.Adaptive.Display);
        Assert.NotEqual(AgentThinking.Adaptive, summarized);
        Assert.Equal(summarized, AgentThinking.Adaptive.WithDisplay(AgentThinkingDisplay.Summarized));
        var budgeted = AgentThinking.Enabled(2048).WithDisplay(AgentThinkingDisplay.Omitted);
        Assert.Equal((AgentThinkingType.Enabled, 2048, AgentThinkingDisplay.Omitted), (budgeted.Type, budgeted.BudgetTokens, budgeted.Display));

        var disabled = Assert.Throws<InvalidOperationException>(() => AgentThinking.Disabled.WithDisplay(AgentThinkingDisplay.Omitted));
        Assert.Contains("AgentThinking.Adaptive", disabled.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => AgentThinking.Adaptive.WithDisplay((AgentThinkingDisplay)7));
    }

    [DatabaseFact]
    public async Task ThinkingDisplay_IsStoredWithTheAgent_AndSentInTheThinkingField()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Thinking = AgentThinking.Enabled(2048).WithDisplay(AgentThinkingDisplay.Summarized), MaxTokens = 8192 });
        Assert.Equal(AgentThinking.Enabled(2048).WithDisplay(AgentThinkingDisplay.Summarized), (await h.Client.GetAgentByIdAsync(agent.Id)).Thinking);
        h.Claude.Respond(_ => FakeReply.Message(FakeContentBlock.Thinking("Short."), FakeContentBlock.Text("ok")));

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"), "the run", s_timeout);

        Assert.Equal("""{"type":"enabled","budget_tokens":2048,"display":"summarized"}""", Thinking(Assert.Single(h.Claude.Requests, r => r.IsMessagesCall).Body!.Value));
        await h.Client.UpdateAgentAsync(agent with { Thinking = AgentThinking.Adaptive });
        Assert.Same(AgentThinking.Adaptive, (await h.Client.GetAgentByIdAsync(agent.Id)).Thinking);
    }

    [DatabaseFact]
    public async Task ThinkingDisplayOmitted_StreamsNoThinking_StoresTheEmptyBlockWithItsSignature_AndSendsItBackUnchanged()
    {
        await using var h = await Harness.StartAsync(db, tools: Lookup());
        var agent = await h.AgentAsync(a => a with
        {
            Model = "claude-opus-4-7",
            Tools = ["lookup"],
            Thinking = AgentThinking.Adaptive.WithDisplay(AgentThinkingDisplay.Omitted),
        });
        var watched = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(async (r, cancellationToken) =>
        {
            if (r.ToolResults.Count > 0)
            {
                return FakeReply.Message(FakeContentBlock.Thinking("It was found.", "sig-2"), FakeContentBlock.Text("Found it."));
            }

            await watched.Task.WaitAsync(cancellationToken);
            return FakeReply.Message(FakeContentBlock.Thinking("A hidden plan.", "sig-1"), FakeContentBlock.ToolUse("lookup", new { }, "toolu_o1"))
                with { StopReason = "tool_use" };
        });
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "look it up");

        var events = await WatchToTheEndAsync(h, runId, watched);

        Assert.Equal(RunState.Completed, (await h.Client.GetRunAsync(runId)).State);
        Assert.Empty(events.OfType<ThinkingDeltaEvent>());
        Assert.Contains(events, e => e is TextDeltaEvent);
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.Equal([ContentTypes.Thinking, ContentTypes.ToolUse], messages[1].Content.Select(b => b.Type));
        Assert.Equal("", messages[1].Content[0].Text ?? "");
        Assert.Equal("sig-1", messages[1].Content[0].Signature);

        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).Select(r => r.Body!.Value).ToList();
        Assert.Equal(2, requests.Count);
        Assert.All(requests, body => Assert.Equal("""{"type":"adaptive","display":"omitted"}""", Thinking(body)));
        var echoed = requests[1].GetProperty("messages")[1].GetProperty("content")[0];
        Assert.Equal("thinking", echoed.GetProperty("type").GetString());
        Assert.Equal("", echoed.GetProperty("thinking").GetString());
        Assert.Equal("sig-1", echoed.GetProperty("signature").GetString());
    }

    [DatabaseFact]
    public async Task InvalidThinking_IsRefusedOnCreateAndUpdate_SayingWhatToFix()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();

        async Task Refused(Func<AgentDefinition, AgentDefinition> change, params string[] expected)
        {
            var create = await Assert.ThrowsAsync<ArgumentException>(() => h.AgentAsync(change));
            var update = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.UpdateAgentAsync(change(agent)));
            foreach (var text in expected)
            {
                Assert.Contains(text, create.Message, StringComparison.Ordinal);
                Assert.Contains(text, update.Message, StringComparison.Ordinal);
            }
        }

        await Refused(a => a with { Thinking = AgentThinking.Enabled(1000) }, "budget of 1000 tokens", "minimum is 1024");
        // The default max_tokens is 4096: a budget of 4096 leaves no room for the answer.
        await Refused(a => a with { Thinking = AgentThinking.Enabled(4096) }, "less than AgentDefinition.MaxTokens (4096, the default)", "Raise MaxTokens");
        await Refused(a => a with { Thinking = AgentThinking.Enabled(2048), MaxTokens = 2048 }, "less than AgentDefinition.MaxTokens (2048)");
        await Refused(a => a with { Thinking = AgentThinking.Adaptive, Temperature = 0.5 }, "AgentDefinition.Temperature is 0.5", "only accepts 1");
        await Refused(a => a with { Thinking = AgentThinking.Enabled(1024), TopK = 40 }, "AgentDefinition.TopK is 40", "refuses top_k");
        await Refused(a => a with { Thinking = AgentThinking.Adaptive, TopP = 0.9 }, "AgentDefinition.TopP is 0.9", "0.95 to 1");
        await Refused(a => a with { Effort = (AgentEffort)42 }, "AgentDefinition.Effort is 42");
        Assert.Null((await h.Client.GetAgentByIdAsync(agent.Id)).Thinking);

        // What the API accepts is accepted: sampling without thinking, temperature 1 and top_p from 0.95 with it, and an agent
        // read back (top_p 0.95 is stored as REAL, 0.949999988) can be written again.
        await h.AgentAsync(a => a with { Thinking = AgentThinking.Disabled, Temperature = 0.5, TopK = 40 });
        var sampled = await h.AgentAsync(a => a with { Thinking = AgentThinking.Adaptive, Temperature = 1, TopP = 0.95 });
        await h.Client.UpdateAgentAsync(await h.Client.GetAgentByIdAsync(sampled.Id));
        await h.AgentAsync(a => a with { Thinking = AgentThinking.Enabled(4095) });
    }

    [DatabaseFact]
    public async Task StreamingRun_SendsThinkingAndEffort_StreamsTheThinking_StoresItsSignature_AndSendsTheBlockBackUnchanged()
    {
        await using var h = await Harness.StartAsync(db, tools: Lookup());
        var agent = await h.AgentAsync(a => a with { Model = "claude-opus-4-6", Tools = ["lookup"], Thinking = AgentThinking.Adaptive, Effort = AgentEffort.Medium });
        const string thought = "The user wants a lookup; I will call the tool and then summarise what it returns.";
        var watched = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(async (r, cancellationToken) =>
        {
            if (r.ToolResults.Count > 0)
            {
                return FakeReply.Message(FakeContentBlock.Thinking("It was found.", "sig-2"), FakeContentBlock.Text("Found it."));
            }

            // Streamed once the instance knows of the watch, so the thinking arrives as deltas.
            await watched.Task.WaitAsync(cancellationToken);
            return FakeReply.Message(FakeContentBlock.Thinking(thought, "sig-1"), FakeContentBlock.ToolUse("lookup", new { }, "toolu_t1"))
                with { StopReason = "tool_use" };
        });
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "look it up");

        var events = await WatchToTheEndAsync(h, runId, watched);

        Assert.Equal(RunState.Completed, (await h.Client.GetRunAsync(runId)).State);
        Assert.Equal(thought, string.Concat(events.OfType<ThinkingDeltaEvent>().Where(d => d.IterationNumber == 1).Select(d => d.Thinking)));

        var messages = await h.Client.GetMessagesAsync(session);
        Assert.Equal([ContentTypes.Thinking, ContentTypes.ToolUse], messages[1].Content.Select(b => b.Type));
        Assert.Equal(thought, messages[1].Content[0].Text);
        Assert.Equal("sig-1", messages[1].Content[0].Signature);
        Assert.Equal("sig-2", messages[3].Content[0].Signature);

        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).Select(r => r.Body!.Value).ToList();
        Assert.Equal(2, requests.Count);
        Assert.All(requests, body =>
        {
            Assert.Equal("""{"type":"adaptive"}""", Thinking(body));
            Assert.Equal("medium", Effort(body));
        });
        // With the tool result goes the thinking block, unchanged, first in the assistant turn.
        var echoed = requests[1].GetProperty("messages")[1].GetProperty("content")[0];
        Assert.Equal("thinking", echoed.GetProperty("type").GetString());
        Assert.Equal(thought, echoed.GetProperty("thinking").GetString());
        Assert.Equal("sig-1", echoed.GetProperty("signature").GetString());
        Assert.False(echoed.TryGetProperty("cache_control", out _));
    }

    [DatabaseFact]
    public async Task BudgetedThinking_StaysBelowMaxTokens_WhenATruncatedToolCallDoublesIt()
    {
        await using var h = await Harness.StartAsync(db, tools: Lookup());
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"], Thinking = AgentThinking.Enabled(1024), MaxTokens = 1500 });
        h.Claude.Enqueue(
            FakeReply.Message(FakeContentBlock.Thinking("Long plan."), FakeContentBlock.TruncatedToolUse("lookup", "{\"q\": \"par")) with { StopReason = "max_tokens" },
            FakeReply.Message(FakeContentBlock.Thinking("Shorter plan."), FakeContentBlock.ToolUse("lookup", new { })) with { StopReason = "tool_use" },
            FakeReply.Text("Done."));

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "look"), "the run", s_timeout);

        Assert.Equal("Done.", response.Text);
        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).Select(r => r.Body!.Value).ToList();
        Assert.Equal([1500L, 3000L, 1500L], requests.Select(b => b.GetProperty("max_tokens").GetInt64()));
        Assert.All(requests, body => Assert.Equal("""{"type":"enabled","budget_tokens":1024}""", Thinking(body)));
        Assert.All(requests, body => Assert.False(body.TryGetProperty("output_config", out _)));
    }

    [DatabaseFact]
    public async Task ThinkingDisplayOmitted_BatchRun_StoresTheEmptyBlockWithItsSignature_AndSendsItBackUnchanged()
    {
        await using var h = await Harness.StartAsync(db, tools: Lookup());
        var agent = await h.AgentAsync(a => a with
        {
            Model = "claude-opus-4-7",
            Tools = ["lookup"],
            Thinking = AgentThinking.Adaptive.WithDisplay(AgentThinkingDisplay.Omitted),
        });
        var bodies = ThinkThenLookUp(h, "A hidden batch plan.", "sig-ob", "toolu_ob1");
        var session = await h.Client.NewSessionAsync();

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(session, agent.Id, "look in a batch, quietly"), "the batch run", s_timeout);

        Assert.Equal("Batched and found.", response.Text);
        Assert.Equal(2, bodies.Count);
        Assert.All(bodies, body => Assert.Equal("""{"type":"adaptive","display":"omitted"}""", Thinking(body)));
        var stored = (await h.Client.GetMessagesAsync(session))[1].Content[0];
        Assert.Equal((ContentTypes.Thinking, "", "sig-ob"), (stored.Type, stored.Text ?? "", stored.Signature));
        var echoed = bodies[1].GetProperty("messages")[1].GetProperty("content")[0];
        Assert.Equal("thinking", echoed.GetProperty("type").GetString());
        Assert.Equal("", echoed.GetProperty("thinking").GetString());
        Assert.Equal("sig-ob", echoed.GetProperty("signature").GetString());
    }

    [DatabaseFact]
    public async Task BatchRun_SendsThinkingAndEffort_AndTheThinkingBlockBackWithTheToolResult()
    {
        await using var h = await Harness.StartAsync(db, tools: Lookup());
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"], Thinking = AgentThinking.Enabled(2048), MaxTokens = 8192, Effort = AgentEffort.Low });
        var bodies = ThinkThenLookUp(h, "Batch thought.", "sig-b", "toolu_b1");
        var session = await h.Client.NewSessionAsync();

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(session, agent.Id, "look in a batch"), "the batch run", s_timeout);

        Assert.Equal("Batched and found.", response.Text);
        Assert.Equal(RunMode.Batch, (await h.Client.GetRunAsync(response.RunId)).RunMode);
        Assert.Equal(2, bodies.Count);
        Assert.All(bodies, body =>
        {
            Assert.Equal("""{"type":"enabled","budget_tokens":2048}""", Thinking(body));
            Assert.Equal("low", Effort(body));
        });
        var echoed = bodies[1].GetProperty("messages")[1].GetProperty("content")[0];
        Assert.Equal("Batch thought.", echoed.GetProperty("thinking").GetString());
        Assert.Equal("sig-b", echoed.GetProperty("signature").GetString());
        Assert.Equal("sig-b", (await h.Client.GetMessagesAsync(session))[1].Content[0].Signature);
    }

    [DatabaseFact]
    public async Task ChatClient_AnAgentsThinking_IsReasoningContent_ApartFromTheText()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Model = "claude-opus-4-6", Thinking = AgentThinking.Adaptive });
        h.Claude.Respond(_ => FakeReply.Message(FakeContentBlock.Thinking("Weigh the options first."), FakeContentBlock.Text("Take the train.")));
        using var chat = h.Client.AsChatClient(agent.Id);

        var response = await Eventually.WithinAsync(chat.GetResponseAsync("Train or plane?"), "the chat answer", s_timeout);

        Assert.Equal("Take the train.", response.Text);
        var contents = response.Messages.SelectMany(m => m.Contents).ToList();
        Assert.Equal("Weigh the options first.", string.Concat(contents.OfType<TextReasoningContent>().Select(c => c.Text)));
        Assert.DoesNotContain("Weigh", string.Concat(contents.OfType<TextContent>().Select(c => c.Text)), StringComparison.Ordinal);
        Assert.Equal("""{"type":"adaptive"}""", Thinking(Assert.Single(h.Claude.Requests, r => r.IsMessagesCall).Body!.Value));
    }

    [DatabaseFact]
    public async Task AutoCompaction_InAThinkingAgentsRun_TheSummarisersCallSendsNoThinkingNorEffort()
    {
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.AutoCompaction = true;
            o.Compaction = new CompactionOptions { MaxTokensForModel = 4_000, Trigger = 0.8, TargetTokens = 1_000, ProtectedTokens = 100, PreserveLastN = 0 };
        });
        var bodies = new List<(bool Summariser, JsonElement Body)>();
        h.Claude.Respond(r =>
        {
            var summariser = r.SystemText.StartsWith("You summarise conversations", StringComparison.Ordinal);
            lock (bodies)
            {
                bodies.Add((summariser, r.Body.Clone()));
            }

            return summariser
                ? FakeReply.Text("SUMMARY of the earlier turns")
                : FakeReply.Message(FakeContentBlock.Thinking("Noting it."), FakeContentBlock.Text("noted"));
        });
        var agent = await h.AgentAsync(a => a with { Thinking = AgentThinking.Enabled(1024), Effort = AgentEffort.Low });
        var session = await h.Client.NewSessionAsync();
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "a long document: " + new string('d', 14_000)), "the first run", s_timeout);

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "and now?"), "the run that compacts first", s_timeout);

        Assert.Equal("auto", Assert.Single(await h.Client.GetCompactionEventsAsync(session)).Reason);
        var summary = Assert.Single(bodies, b => b.Summariser).Body;
        Assert.False(summary.TryGetProperty("thinking", out _));
        Assert.False(summary.TryGetProperty("output_config", out _));
        var agentCalls = bodies.Where(b => !b.Summariser).Select(b => b.Body).ToList();
        Assert.Equal(2, agentCalls.Count);
        Assert.All(agentCalls, body =>
        {
            Assert.Equal("""{"type":"enabled","budget_tokens":1024}""", Thinking(body));
            Assert.Equal("low", Effort(body));
        });
    }

    [DatabaseFact]
    public async Task AnAgentWithoutThinkingOrEffort_SendsNeitherField()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("ok"));

        await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        var body = Assert.Single(h.Claude.Requests, r => r.IsMessagesCall).Body!.Value;
        Assert.False(body.TryGetProperty("thinking", out _));
        Assert.False(body.TryGetProperty("output_config", out _));
    }

    /// <summary>Claude thinks and calls lookup, then answers "Batched and found." with the tool result; the request bodies, in
    /// order.</summary>
    private static List<JsonElement> ThinkThenLookUp(Harness h, string thought, string signature, string toolUseId)
    {
        var bodies = new List<JsonElement>();
        h.Claude.Respond(r =>
        {
            lock (bodies)
            {
                bodies.Add(r.Body.Clone());
            }

            return r.ToolResults.Count > 0
                ? FakeReply.Text("Batched and found.")
                : FakeReply.Message(FakeContentBlock.Thinking(thought, signature), FakeContentBlock.ToolUse("lookup", new { }, toolUseId)) with { StopReason = "tool_use" };
        });
        return bodies;
    }
}
