using System.Text.Json;
using Anthropic;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;

namespace AgentPg.Testing.Tests;

public sealed partial class FakeClaudeServerTests
{
    [Fact]
    public async Task Create_TextReply_ReturnsScriptedMessage()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("Hello there!"));

        var message = await client.Messages.Create(Sdk.Ask("Hi"));

        Assert.StartsWith("msg_", message.ID);
        Assert.Equal(Sdk.Model, message.Model.Raw());
        Assert.Equal("Hello there!", Sdk.Text(message));
        Assert.Equal("end_turn", message.StopReason!.Raw());
        Assert.Null(message.StopSequence);
        Assert.Equal(1, message.Usage.InputTokens); // "Hi": 2 bytes -> 1 token
        Assert.Equal(3, message.Usage.OutputTokens); // "Hello there!": 12 bytes -> 3 tokens
        Assert.Equal(0, message.Usage.CacheCreationInputTokens);
        Assert.Equal(0, message.Usage.CacheReadInputTokens);
    }

    [Fact]
    public async Task CreateStreaming_TextReply_StreamsEventsAndAggregatesToScriptedMessage()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        const string text = "Streaming works, one small chunk after another.";
        claude.Enqueue(FakeReply.Text(text), FakeReply.Text(text));

        var events = await Sdk.CollectAsync(client.Messages.CreateStreaming(Sdk.Ask("Stream please")));
        var message = await client.Messages.CreateStreaming(Sdk.Ask("Stream please")).Aggregate();

        var types = events.Select(e => e.Type.Raw()).ToList();
        Assert.Equal("message_start", types[0]);
        Assert.Equal("content_block_start", types[1]);
        Assert.Equal(["content_block_stop", "message_delta", "message_stop"], types[^3..]);
        var textDeltas = events.Select(e => e.TryPickContentBlockDelta(out var d) && d.Delta.TryPickText(out var t) ? t.Text : null).OfType<string>().ToList();
        Assert.True(textDeltas.Count > 1, "the text should arrive in several text_delta events");
        Assert.Equal(text, string.Concat(textDeltas));
        Assert.Equal(text, Sdk.Text(message));
        Assert.Equal("end_turn", message.StopReason!.Raw());
        Assert.True(message.Usage.OutputTokens > 1);
        Assert.True(claude.Requests.All(r => r.IsStreaming));
    }

    [Fact]
    public async Task Create_ToolUseReply_ReturnsToolUseWithGeneratedId()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.ToolUse("get_weather", new { location = "Paris", unit = "celsius" }));

        var message = await client.Messages.Create(Sdk.Ask("Weather in Paris?") with { Tools = [Sdk.Tool("get_weather", "Get the weather", "location")] });

        var toolUse = Assert.Single(Sdk.ToolUses(message));
        Assert.StartsWith("toolu_01", toolUse.ID);
        Assert.Equal("get_weather", toolUse.Name);
        Assert.Equal("Paris", toolUse.Input["location"].GetString());
        Assert.Equal("celsius", toolUse.Input["unit"].GetString());
        Assert.Equal("tool_use", message.StopReason!.Raw());
    }

    [Fact]
    public async Task CreateStreaming_ToolUseReply_SendsInputInSeveralJsonChunksStartingEmpty()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        var reply = FakeReply.Message(
            FakeContentBlock.Text("Let me check."),
            FakeContentBlock.ToolUse("get_weather", new { location = "San Francisco, CA", unit = "fahrenheit" }, id: "toolu_fixed"));
        claude.Enqueue(reply, reply);
        var request = Sdk.Ask("Weather in SF?") with { Tools = [Sdk.Tool("get_weather", "Get the weather", "location")] };

        var events = await Sdk.CollectAsync(client.Messages.CreateStreaming(request));
        var message = await client.Messages.CreateStreaming(request).Aggregate();

        var chunks = Sdk.PartialJson(events);
        Assert.True(chunks.Count >= 4, $"expected several input_json_delta events, got {chunks.Count}");
        Assert.Equal("", chunks[0]);
        Assert.Equal("""{"location":"San Francisco, CA","unit":"fahrenheit"}""", string.Concat(chunks));
        var start = events.Select(e => e.TryPickContentBlockStart(out var s) ? s : null).OfType<RawContentBlockStartEvent>().Last();
        Assert.Equal(1, start.Index);
        Assert.Equal("{}", start.ContentBlock.Json.GetProperty("input").GetRawText());
        var toolUse = Assert.Single(Sdk.ToolUses(message));
        Assert.Equal("toolu_fixed", toolUse.ID);
        Assert.Equal("San Francisco, CA", toolUse.Input["location"].GetString());
        Assert.Equal("Let me check.", Sdk.Text(message));
        Assert.Equal("tool_use", message.StopReason!.Raw());
    }

    [Fact]
    public async Task Create_ParallelToolUses_ReturnsEveryToolUseWithDistinctIds()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Message(
            FakeContentBlock.ToolUse("get_weather", new { location = "Paris" }),
            FakeContentBlock.ToolUse("get_weather", new { location = "Rome" }),
            FakeContentBlock.ToolUse("get_time", """{"zone":"CET"}""")));

        var message = await client.Messages.CreateStreaming(Sdk.Ask("Paris, Rome, time")).Aggregate();

        var toolUses = Sdk.ToolUses(message);
        Assert.Equal(["get_weather", "get_weather", "get_time"], toolUses.Select(t => t.Name));
        Assert.Equal(["Paris", "Rome"], toolUses.Take(2).Select(t => t.Input["location"].GetString()));
        Assert.Equal("CET", toolUses[2].Input["zone"].GetString());
        Assert.Equal(3, toolUses.Select(t => t.ID).Distinct().Count());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Create_ThinkingWithSignature_ReturnsThinkingRedactedThinkingAndText(bool streaming)
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Message(
            FakeContentBlock.Thinking("The user wants a greeting; a short one will do.", "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"),
            FakeContentBlock.RedactedThinking("EmwKAhgBEgy3va3pzix"),
            FakeContentBlock.Text("Hello!")));
        var request = Sdk.Ask("Greet me") with { MaxTokens = 4096, Thinking = new ThinkingConfigEnabled(2048) };

        List<RawMessageStreamEvent> events = [];
        Message message;
        if (streaming)
        {
            events = await Sdk.CollectAsync(client.Messages.CreateStreaming(request));
            claude.Enqueue(FakeReply.Message(
                FakeContentBlock.Thinking("The user wants a greeting; a short one will do.", "EqQBCgIYAhIM1gbcDa9GJwZA2b3h"),
                FakeContentBlock.RedactedThinking("EmwKAhgBEgy3va3pzix"),
                FakeContentBlock.Text("Hello!")));
            message = await client.Messages.CreateStreaming(request).Aggregate();
        }
        else
        {
            message = await client.Messages.Create(request);
        }

        Assert.Equal(3, message.Content.Count);
        Assert.True(message.Content[0].TryPickThinking(out var thinking));
        Assert.Equal("The user wants a greeting; a short one will do.", thinking.Thinking);
        Assert.Equal("EqQBCgIYAhIM1gbcDa9GJwZA2b3h", thinking.Signature);
        Assert.True(message.Content[1].TryPickRedactedThinking(out var redacted));
        Assert.Equal("EmwKAhgBEgy3va3pzix", redacted.Data);
        Assert.Equal("Hello!", Sdk.Text(message));
        if (streaming)
        {
            var deltaTypes = Sdk.DeltaTypes(events);
            Assert.Contains("thinking_delta", deltaTypes);
            Assert.Equal(1, deltaTypes.Count(t => t == "signature_delta"));
            Assert.True(deltaTypes.IndexOf("signature_delta") > deltaTypes.LastIndexOf("thinking_delta"), "the signature comes after the thinking text");
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Create_ThinkingDisplayOmitted_ReturnsTheBlockWithEmptyThinkingAndItsSignature_BilledAsTheFullThinking(bool streaming)
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        const string thought = "The user wants a greeting; a short one will do.";
        FakeReply Reply() => FakeReply.Message(FakeContentBlock.Thinking(thought, "EqQBCgIYAhIM"), FakeContentBlock.Text("Hello!"));
        var summarized = Sdk.Ask("Greet me") with { MaxTokens = 4096, Thinking = new ThinkingConfigEnabled(2048) { Display = ThinkingConfigEnabledDisplay.Summarized } };
        var omitted = summarized with { Thinking = new ThinkingConfigEnabled(2048) { Display = ThinkingConfigEnabledDisplay.Omitted } };

        claude.Enqueue(Reply(), Reply());
        var full = await client.Messages.Create(summarized);
        List<RawMessageStreamEvent> events = [];
        Message message;
        if (streaming)
        {
            events = await Sdk.CollectAsync(client.Messages.CreateStreaming(omitted));
            claude.Enqueue(Reply());
            message = await client.Messages.CreateStreaming(omitted).Aggregate();
        }
        else
        {
            message = await client.Messages.Create(omitted);
        }

        Assert.True(full.Content[0].TryPickThinking(out var fullThinking));
        Assert.Equal(thought, fullThinking.Thinking);
        Assert.True(message.Content[0].TryPickThinking(out var thinking));
        Assert.Equal("", thinking.Thinking);
        Assert.Equal("EqQBCgIYAhIM", thinking.Signature);
        Assert.Equal("Hello!", Sdk.Text(message));
        Assert.Equal(full.Usage.OutputTokens, message.Usage.OutputTokens);
        if (streaming)
        {
            var deltaTypes = Sdk.DeltaTypes(events);
            Assert.DoesNotContain("thinking_delta", deltaTypes);
            Assert.Equal(1, deltaTypes.Count(t => t == "signature_delta"));
        }
    }

    [Theory]
    [InlineData("end_turn", false)]
    [InlineData("end_turn", true)]
    [InlineData("max_tokens", false)]
    [InlineData("max_tokens", true)]
    [InlineData("stop_sequence", false)]
    [InlineData("stop_sequence", true)]
    [InlineData("pause_turn", false)]
    [InlineData("pause_turn", true)]
    [InlineData("refusal", false)]
    [InlineData("refusal", true)]
    [InlineData("model_context_window_exceeded", false)]
    [InlineData("model_context_window_exceeded", true)]
    [InlineData("tool_use", false)]
    [InlineData("tool_use", true)]
    public async Task Create_EachStopReason_ReportsStopReasonAndSequence(string stopReason, bool streaming)
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        var reply = stopReason == FakeStopReason.ToolUse
            ? FakeReply.ToolUse("lookup", new { id = 7 })
            : FakeReply.Text("Some output") with
            {
                StopReason = stopReason,
                StopSequence = stopReason == FakeStopReason.StopSequence ? "END" : null,
            };
        claude.Enqueue(reply);
        var request = Sdk.Ask("Go") with { StopSequences = ["END"] };

        var message = streaming ? await client.Messages.CreateStreaming(request).Aggregate() : await client.Messages.Create(request);

        Assert.Equal(stopReason, message.StopReason!.Raw());
        Assert.Equal(stopReason == FakeStopReason.StopSequence ? "END" : null, message.StopSequence);
    }

    [Fact]
    public async Task CreateStreaming_TruncatedToolUse_StreamsPartialJsonThatStopsMidObject()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        const string partial = """{"location": "San Francisco, CA", "unit": "fahr""";
        claude.Enqueue(FakeReply.Message(FakeContentBlock.TruncatedToolUse("get_weather", partial)) with { StopReason = FakeStopReason.MaxTokens });

        var events = await Sdk.CollectAsync(client.Messages.CreateStreaming(Sdk.Ask("Weather?", maxTokens: 20)));

        var chunks = Sdk.PartialJson(events);
        Assert.True(chunks.Count >= 3);
        Assert.Equal(partial, string.Concat(chunks));
        Assert.ThrowsAny<JsonException>(() => JsonDocument.Parse(string.Concat(chunks)));
        var delta = events.Select(e => e.TryPickDelta(out var d) ? d : null).OfType<RawMessageDeltaEvent>().Single();
        Assert.Equal("max_tokens", delta.Delta.StopReason!.Raw());
        Assert.Equal("message_stop", events[^1].Type.Raw());
        claude.Enqueue(FakeReply.Message(FakeContentBlock.TruncatedToolUse("get_weather", partial)) with { StopReason = FakeStopReason.MaxTokens });
        var aggregated = await client.Messages.CreateStreaming(Sdk.Ask("Weather?", maxTokens: 20)).Aggregate();
        // The SDK's aggregator cannot parse the cut-off JSON and leaves the input empty.
        Assert.Empty(Assert.Single(Sdk.ToolUses(aggregated)).Input);
        Assert.Equal("max_tokens", aggregated.StopReason!.Raw());
    }

    [Fact]
    public async Task Create_TruncatedToolUse_ReturnsInputWithTheCompleteMembers()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Message(FakeContentBlock.TruncatedToolUse("get_weather", """{"location": "San Francisco, CA", "unit": "fahr""")) with { StopReason = FakeStopReason.MaxTokens });

        var message = await client.Messages.Create(Sdk.Ask("Weather?", maxTokens: 20));

        var toolUse = Assert.Single(Sdk.ToolUses(message));
        Assert.Equal(["location"], toolUse.Input.Keys);
        Assert.Equal("San Francisco, CA", toolUse.Input["location"].GetString());
        Assert.Equal("max_tokens", message.StopReason!.Raw());
    }

    [Fact]
    public async Task Create_ExplicitUsage_ReportsTheGivenCounts()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        var usage = new FakeUsage { InputTokens = 472, OutputTokens = 89, CacheCreationInputTokens = 10, CacheReadInputTokens = 1200 };
        claude.Enqueue(FakeReply.Text("x") with { Usage = usage }, FakeReply.Text("x") with { Usage = usage, Model = "claude-opus-4-6" });

        var plain = await client.Messages.Create(Sdk.Ask("Hi"));
        var streamed = await client.Messages.CreateStreaming(Sdk.Ask("Hi")).Aggregate();

        foreach (var message in new[] { plain, streamed })
        {
            Assert.Equal(472, message.Usage.InputTokens);
            Assert.Equal(89, message.Usage.OutputTokens);
            Assert.Equal(10, message.Usage.CacheCreationInputTokens);
            Assert.Equal(1200, message.Usage.CacheReadInputTokens);
        }

        Assert.Equal("claude-opus-4-6", streamed.Model.Raw());
    }

    [Fact]
    public async Task Create_Unscripted_Returns500ThatTheSdkDoesNotRetry()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();

        var error = await Assert.ThrowsAsync<Anthropic5xxException>(() => client.Messages.Create(Sdk.Ask("Anybody there?")));

        Assert.Equal(500, (int)error.StatusCode);
        Assert.Equal("api_error", error.Type!.Raw());
        Assert.Contains("no scripted reply", error.ApiMessage);
        Assert.Contains("Anybody there?", error.ApiMessage);
        Assert.Single(claude.Requests);
    }

    [Fact]
    public async Task Create_ResponderAnswersToolCallThenFinalText_SeesParsedRequest()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient(o => o with { ExtraHeaders = new Dictionary<string, string> { ["anthropic-beta"] = "interleaved-thinking-2025-05-14, context-1m-2025-08-07" } });
        var seen = new List<FakeRequest>();
        claude.Respond(request =>
        {
            lock (seen)
            {
                seen.Add(request);
            }

            return request.ToolResults.Count == 0
                ? FakeReply.ToolUse("get_weather", new { location = "Paris" })
                : FakeReply.Text($"It is {request.ToolResults[0].Content} in Paris.");
        });
        var first = Sdk.Ask("What's the weather in Paris?") with
        {
            System = "You are a weather bot.",
            Tools = [Sdk.Tool("get_weather", "Get the weather", "location")],
            ToolChoice = new ToolChoiceAuto(),
        };

        var call = await client.Messages.Create(first);
        var toolUse = Sdk.ToolUses(call).Single();
        var followUp = first with
        {
            Messages =
            [
                .. first.Messages,
                new AssistantMessageParam(call.Content.Select(b => new ContentBlockParam(b.Json)).ToList()),
                new UserMessageParam(new List<ContentBlockParam> { new ToolResultBlockParam(toolUse.ID) { Content = "18 C, sunny" } }),
            ],
        };
        var final = await client.Messages.Create(followUp);

        Assert.Equal("It is 18 C, sunny in Paris.", Sdk.Text(final));
        Assert.Equal(2, seen.Count);
        Assert.Equal(Sdk.Model, seen[0].Model);
        Assert.Equal("You are a weather bot.", seen[0].SystemText);
        Assert.Equal("What's the weather in Paris?", seen[0].LastUserText);
        Assert.True(seen[0].HasTool("get_weather"));
        Assert.Equal("location", seen[0].Tools[0].InputSchema!.Value.GetProperty("required")[0].GetString());
        Assert.Equal("auto", seen[0].ToolChoice!.Value.GetProperty("type").GetString());
        Assert.Equal(["interleaved-thinking-2025-05-14", "context-1m-2025-08-07"], seen[0].Betas);
        Assert.Equal("2026-10-21", seen[0].Headers["anthropic-version"]);
        Assert.Equal(0, seen[0].RetryCount);
        Assert.Equal(1024, seen[0].MaxTokens);
        var result = Assert.Single(seen[1].ToolResults);
        Assert.Equal(toolUse.ID, result.ToolUseId);
        Assert.Equal("get_weather", result.ToolName);
        Assert.False(result.IsError);
        Assert.Equal("", seen[1].LastUserText);
        Assert.Equal(3, seen[1].Messages.GetArrayLength());
        Assert.True(seen[1].InputTokens > seen[0].InputTokens);
    }

    [Fact]
    public async Task Create_QueueAndResponder_QueueIsUsedFirst()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("from responder") });
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("first"), FakeReply.Text("second"));

        var answers = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            answers.Add(Sdk.Text(await client.Messages.Create(Sdk.Ask("Next"))));
        }

        Assert.Equal(["first", "second", "from responder"], answers);
        Assert.Equal(0, claude.PendingReplyCount);
    }

    [Fact]
    public async Task Create_AsyncResponder_AnswersWhenTheTestReleasesIt()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        claude.Respond(async (request, cancellationToken) =>
        {
            await release.Task.WaitAsync(cancellationToken);
            return FakeReply.Text("released");
        });

        var pending = client.Messages.Create(Sdk.Ask("Wait for it"));
        await claude.WaitForRequestAsync(r => r.IsMessagesCall);
        Assert.False(pending.IsCompleted);
        release.SetResult();

        Assert.Equal("released", Sdk.Text(await pending));
    }

    [Fact]
    public async Task Create_CacheControlBreakpoint_ReportsCacheCreationThenCacheRead()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { MinimumCacheableTokens = 100 });
        using var client = claude.CreateClient();
        claude.Respond(_ => FakeReply.Text("ok"));
        var longInstructions = string.Concat(Enumerable.Repeat("Follow these stable instructions. ", 40)); // 1,360 bytes -> 340 tokens
        var request = Sdk.Ask("Question one") with
        {
            System = new List<TextBlockParam> { new(longInstructions) { CacheControl = new CacheControlEphemeral { Ttl = Ttl.Ttl1h } } },
        };

        var first = await client.Messages.Create(request);
        var second = await client.Messages.CreateStreaming(request with { Messages = [new UserMessageParam("Question two, longer")] }).Aggregate();
        var uncached = await client.Messages.Create(Sdk.Ask("Question one") with { System = longInstructions });

        Assert.Equal(340, first.Usage.CacheCreationInputTokens);
        Assert.Equal(0, first.Usage.CacheReadInputTokens);
        Assert.Equal(340, first.Usage.CacheCreation!.Ephemeral1hInputTokens);
        Assert.Equal(3, first.Usage.InputTokens); // "Question one": 12 bytes
        Assert.Equal(0, second.Usage.CacheCreationInputTokens);
        Assert.Equal(340, second.Usage.CacheReadInputTokens);
        Assert.Equal(5, second.Usage.InputTokens); // "Question two, longer": 20 bytes
        Assert.Equal(343, uncached.Usage.InputTokens);
        Assert.Equal(0, uncached.Usage.CacheCreationInputTokens);
        Assert.Equal(0, uncached.Usage.CacheReadInputTokens);
    }

    [Fact]
    public async Task Create_BreakpointBelowMinimumCacheableSize_ReportsNoCacheTokens()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Respond(_ => FakeReply.Text("ok"));
        var request = Sdk.Ask("Hi") with { System = new List<TextBlockParam> { new("Short.") { CacheControl = new CacheControlEphemeral() } } };

        await client.Messages.Create(request);
        var second = await client.Messages.Create(request);

        Assert.Equal(0, second.Usage.CacheCreationInputTokens);
        Assert.Equal(0, second.Usage.CacheReadInputTokens);
        Assert.Equal(3, second.Usage.InputTokens);
    }
}
