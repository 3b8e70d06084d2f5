using System.Text.Json;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;

namespace AgentPg.Testing.Tests;

public sealed partial class FakeClaudeServerTests
{
    [Fact]
    public async Task Requests_AfterCreate_HoldWhatTheSdkSent()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("ok"));
        var request = new MessageCreateParams(
            rawHeaderData: new Dictionary<string, JsonElement>(),
            rawQueryData: new Dictionary<string, JsonElement>(),
            rawBodyData: new Dictionary<string, JsonElement>
            {
                ["temperature"] = JsonSerializer.SerializeToElement(0.2),
                ["top_p"] = JsonSerializer.SerializeToElement(0.9),
                ["top_k"] = JsonSerializer.SerializeToElement(40),
            })
        {
            Model = "claude-sonnet-4-20250514", // takes temperature and top_p together (Sonnet 4.5 and later take one)
            MaxTokens = 256,
            System = new List<TextBlockParam> { new("You are a helpful assistant.") { CacheControl = new CacheControlEphemeral() } },
            Messages = [new UserMessageParam("What's the weather in SF?")],
            Tools = [Sdk.Tool("get_weather", "Get the current weather", "location")],
            ToolChoice = new ToolChoiceTool("get_weather") { DisableParallelToolUse = true },
            Metadata = new Metadata { UserID = "user-123" },
            StopSequences = ["\n\nHuman:"],
        };

        var before = DateTimeOffset.UtcNow;
        await client.Messages.Create(request);

        var recorded = Assert.Single(claude.Requests);
        var body = recorded.Body!.Value;
        Assert.Equal("POST", recorded.Method);
        Assert.Equal("/v1/messages", recorded.Path);
        Assert.True(recorded.IsMessagesCall);
        Assert.False(recorded.IsStreaming);
        Assert.Equal(0, recorded.RetryCount);
        Assert.Empty(recorded.Betas);
        Assert.Equal($"Bearer {claude.ApiKey}", recorded.Headers["authorization"]);
        Assert.Equal("application/json", recorded.Headers["Content-Type"]);
        Assert.StartsWith("req_", recorded.RequestId);
        Assert.InRange(recorded.ReceivedAt, before.AddSeconds(-1), DateTimeOffset.UtcNow.AddSeconds(1));
        Assert.Equal(0.2, body.GetProperty("temperature").GetDouble());
        Assert.Equal(0.9, body.GetProperty("top_p").GetDouble());
        Assert.Equal(40, body.GetProperty("top_k").GetInt32());
        Assert.Equal("You are a helpful assistant.", body.GetProperty("system")[0].GetProperty("text").GetString());
        Assert.Equal("ephemeral", body.GetProperty("system")[0].GetProperty("cache_control").GetProperty("type").GetString());
        Assert.Equal("get_weather", body.GetProperty("tools")[0].GetProperty("name").GetString());
        Assert.Equal("tool", body.GetProperty("tool_choice").GetProperty("type").GetString());
        Assert.Equal("get_weather", body.GetProperty("tool_choice").GetProperty("name").GetString());
        Assert.True(body.GetProperty("tool_choice").GetProperty("disable_parallel_tool_use").GetBoolean());
        Assert.Equal("user-123", body.GetProperty("metadata").GetProperty("user_id").GetString());
        Assert.Equal("\n\nHuman:", body.GetProperty("stop_sequences")[0].GetString());
    }

    [Fact]
    public async Task WaitForRequestAsync_RequestArrivesLater_ReturnsIt()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("one"), FakeReply.Text("two"));
        await client.Messages.Create(Sdk.Ask("first"));

        var waitForSecond = claude.WaitForRequestAsync(r => r.Body?.GetProperty("messages")[0].GetProperty("content").GetString() == "second");
        Assert.False(waitForSecond.IsCompleted);
        await client.Messages.Create(Sdk.Ask("second"));
        var alreadyThere = await claude.WaitForRequestAsync(r => r.IsMessagesCall);

        Assert.Equal(claude.Requests[1], await waitForSecond);
        Assert.Equal(claude.Requests[0], alreadyThere);
    }

    [Fact]
    public async Task WaitForRequestAsync_NothingArrives_ThrowsTimeoutException()
    {
        await using var claude = await FakeClaudeServer.StartAsync();

        var error = await Assert.ThrowsAsync<TimeoutException>(() => claude.WaitForRequestAsync(timeout: TimeSpan.FromMilliseconds(50)));

        Assert.Contains("No matching request", error.Message);
    }

    [Fact]
    public async Task RequestReceived_IsRaisedBeforeTheAnswerIsSent()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        var raised = new List<(RecordedRequest Request, int PendingReplies)>();
        claude.RequestReceived += (sender, request) =>
        {
            Assert.Same(claude, sender);
            raised.Add((request, claude.PendingReplyCount));
        };
        claude.Enqueue(FakeReply.Text("ok"));

        await client.Messages.Create(Sdk.Ask("Hi"));

        var (request, pending) = Assert.Single(raised);
        Assert.Equal(1, pending); // raised before the reply was taken
        Assert.Equal(claude.Requests[0], request);
    }

    [Fact]
    public async Task ClearRequests_AfterARequest_ForgetsIt()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("ok") });
        using var client = claude.CreateClient();
        await client.Messages.Create(Sdk.Ask("Hi"));

        claude.ClearRequests();
        await client.Messages.CountTokens(new MessageCountTokensParams { Model = Sdk.Model, Messages = [new UserMessageParam("Hi")] });

        Assert.Equal("/v1/messages/count_tokens", Assert.Single(claude.Requests).Path);
    }

    [Fact]
    public async Task Requests_RecordingTurnedOff_StayEmptyButTheEventIsRaised()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { RecordRequests = false, Responder = _ => FakeReply.Text("ok") });
        using var client = claude.CreateClient();
        var raised = 0;
        claude.RequestReceived += (_, _) => Interlocked.Increment(ref raised);

        await client.Messages.Create(Sdk.Ask("Hi"));

        Assert.Empty(claude.Requests);
        Assert.Equal(1, raised);
    }

    [Fact]
    public async Task CountTokens_ReturnsTheSameEstimateAsMessages()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("ok") });
        using var client = claude.CreateClient();

        var count = await client.Messages.CountTokens(new MessageCountTokensParams
        {
            Model = Sdk.Model,
            System = "You are terse.", // 14 bytes -> 4 tokens
            Messages = [new UserMessageParam("Hello, Claude")], // 13 bytes -> 4 tokens
        });
        var message = await client.Messages.Create(Sdk.Ask("Hello, Claude") with { System = "You are terse." });

        Assert.Equal(8, count.InputTokens);
        Assert.Equal(8, message.Usage.InputTokens);
        Assert.Equal(0, claude.PendingReplyCount);
        Assert.Equal(2, claude.Requests.Count);
    }

    [Fact]
    public async Task CountTokens_WithAGenerationSetting_ThrowsBadRequest()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient(o => o with { MaxRetries = 0 });
        var none = new Dictionary<string, JsonElement>();
        Dictionary<string, JsonElement> Body(bool withMaxTokens)
        {
            var body = new Dictionary<string, JsonElement>
            {
                ["model"] = JsonSerializer.SerializeToElement(Sdk.Model),
                ["messages"] = JsonSerializer.SerializeToElement(new[] { new { role = "user", content = "Hello" } }),
            };
            if (withMaxTokens)
            {
                body["max_tokens"] = JsonSerializer.SerializeToElement(1024);
            }

            return body;
        }

        var error = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.CountTokens(MessageCountTokensParams.FromRawUnchecked(none, none, Body(withMaxTokens: true))));
        var count = await client.Messages.CountTokens(MessageCountTokensParams.FromRawUnchecked(none, none, Body(withMaxTokens: false)));

        Assert.Equal("max_tokens: Extra inputs are not permitted", error.ApiMessage);
        Assert.Equal(2, count.InputTokens);
    }

    [Fact]
    public async Task CountTokens_WithTools_CountsTheToolDefinitions()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        var plain = new MessageCountTokensParams { Model = Sdk.Model, Messages = [new UserMessageParam("Hello")] };

        var without = await client.Messages.CountTokens(plain);
        var with = await client.Messages.CountTokens(plain with { Tools = [Sdk.Tool("get_weather", "Get the weather for a city", "location")] });

        Assert.Equal(2, without.InputTokens);
        Assert.True(with.InputTokens > without.InputTokens + 10, $"{with.InputTokens} should include the tool");
    }

    [Fact]
    public async Task CountTokens_PromptOverContextWindow_ThrowsPromptTooLong()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { ContextWindow = 10 });
        using var client = claude.CreateClient();

        var error = await Assert.ThrowsAsync<AnthropicBadRequestException>(() =>
            client.Messages.CountTokens(new MessageCountTokensParams { Model = Sdk.Model, Messages = [new UserMessageParam(new string('y', 80))] }));

        Assert.Equal("prompt is too long: 20 tokens > 10 maximum", error.ApiMessage);
    }
}
