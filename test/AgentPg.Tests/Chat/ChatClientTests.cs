using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Chat;

public sealed class ChatClientTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly ToolSchema s_citySchema = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["city"] = new() { Type = "string" } },
        Required = ["city"],
    };

    [DatabaseFact]
    public async Task GetResponseAsync_MultiTurnThroughConversationId_ContinuesTheSession()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(r => FakeReply.Text($"turn {(r.Messages.GetArrayLength() + 1) / 2}: you said '{r.LastUserText}'"));
        var producer = await h.AddClientAsync(start: false);
        using var chat = producer.AsChatClient(agent.Id);

        var first = await Eventually.WithinAsync(chat.GetResponseAsync([new ChatMessage(ChatRole.User, "hello")]), "the first answer");
        var second = await Eventually.WithinAsync(chat.GetResponseAsync([new ChatMessage(ChatRole.User, "again")],
            new ChatOptions { ConversationId = first.ConversationId }), "the second answer");

        Assert.Equal("turn 1: you said 'hello'", first.Text);
        Assert.Equal("turn 2: you said 'again'", second.Text);
        Assert.Equal(first.ConversationId, second.ConversationId);
        Assert.Equal(ChatFinishReason.Stop, second.FinishReason);
        Assert.NotNull(second.Usage);
        var messages = await producer.GetMessagesAsync(Guid.Parse(second.ConversationId!));
        Assert.Equal(["hello", "turn 1: you said 'hello'", "again", "turn 2: you said 'again'"], messages.Select(m => m.Content[0].Text));
        Assert.Equal(second.ResponseId, messages[^1].RunId.ToString());
    }

    [DatabaseFact]
    public async Task GetResponseAsync_SystemMessagesAndInstructions_AreAddedToTheAgentsSystemPrompt_AndTheModelIsNamed()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("d'accord"));
        using var chat = h.Client.AsChatClient(agent.Id);

        var response = await Eventually.WithinAsync(chat.GetResponseAsync(
            [new ChatMessage(ChatRole.System, "Be terse."), new ChatMessage(ChatRole.User, "hello")],
            new ChatOptions { Instructions = "Answer in French." }), "the answer");
        var plain = await Eventually.WithinAsync(chat.GetResponseAsync([new ChatMessage(ChatRole.User, "again")],
            new ChatOptions { ConversationId = response.ConversationId }), "the second answer");

        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
        Assert.Equal(2, requests.Count);
        Assert.Equal("You are a test agent.\n\nBe terse.\n\nAnswer in French.", SystemText(requests[0]));
        Assert.Equal("You are a test agent.", SystemText(requests[1])); // per call, not kept by the session
        Assert.Equal("claude-sonnet-4-5", response.ModelId);
        Assert.Equal("claude-sonnet-4-5", plain.ModelId);
        Assert.Equal("d'accord", response.Text);
    }

    private static string SystemText(RecordedRequest request)
    {
        var system = request.Body!.Value.GetProperty("system");
        return system.ValueKind == System.Text.Json.JsonValueKind.String
            ? system.GetString()!
            : string.Concat(system.EnumerateArray().Select(b => b.GetProperty("text").GetString()));
    }

    [Fact]
    public async Task GetService_Metadata_NamesTheProviderAndNoModel_TheClientAndItself()
    {
        // The agent chooses the model. Before, DefaultModelId was the agent's id, which OpenTelemetry middleware records as
        // gen_ai.request.model.
        await using var dataSource = Npgsql.NpgsqlDataSource.Create("Host=127.0.0.1;Database=unused");
        await using var client = AgentPgClient.Create(dataSource, new AgentPgOptions());
        using var chat = client.AsChatClient(Guid.NewGuid());

        var metadata = chat.GetService<ChatClientMetadata>();

        Assert.Equal("agentpg", metadata?.ProviderName);
        Assert.Null(metadata?.DefaultModelId);
        Assert.Same(client, chat.GetService<AgentPgClient>());
        Assert.Same(chat, chat.GetService<IChatClient>());
        Assert.Null(chat.GetService<ChatClientMetadata>("a key"));
    }

    [DatabaseFact]
    public async Task GetResponseAsync_Usage_CountsCachedInputTokensAsSuch()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("hi") with
        {
            Usage = new FakeUsage { InputTokens = 100, OutputTokens = 10, CacheReadInputTokens = 30, CacheCreationInputTokens = 5 },
        });
        using var chat = h.Client.AsChatClient(agent.Id);

        var response = await Eventually.WithinAsync(chat.GetResponseAsync([new ChatMessage(ChatRole.User, "hello")]), "the answer");

        // Microsoft.Extensions.AI: the input count includes the cached tokens, which CachedInputTokenCount tells apart.
        Assert.Equal(135, response.Usage!.InputTokenCount);
        Assert.Equal(30, response.Usage.CachedInputTokenCount);
        Assert.Equal(10, response.Usage.OutputTokenCount);
        Assert.Equal(145, response.Usage.TotalTokenCount);
    }

    [DatabaseFact]
    public async Task GetStreamingResponseAsync_StreamsTextAndShowsToolCallsAsFunctionContents()
    {
        const string answer = "It is sunny in Oslo, with a light breeze from the fjord and clear skies all afternoon long.";
        await using var h = await Harness.StartAsync(db,
            tools: new TestTool("get_weather", (_, input, _) => Task.FromResult("sunny in " + input.GetProperty("city").GetString()), s_citySchema));
        var agent = await h.AgentAsync(a => a with { Tools = ["get_weather"] });
        // The answer waits until the worker streaming it knows of the watch (the stream's first update, the tool call, shows the
        // watch is registered; the worker learns of it a moment later), so its deltas are published; it holds after two text deltas
        // until the first piece reached the caller, so it arrives in several pieces under any load.
        var workerKnowsTheWatch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstPiece = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(async (r, cancellationToken) =>
        {
            if (r.ToolResults.Count == 0)
            {
                return FakeReply.ToolUse("get_weather", new { city = "Oslo" });
            }

            await workerKnowsTheWatch.Task.WaitAsync(cancellationToken);
            // message_start, content_block_start and ping come before the text deltas.
            return FakeReply.Text(answer) with { EventDelay = TimeSpan.FromMilliseconds(30), StreamPause = new FakeStreamPause(3 + 2, firstPiece.Task) };
        });
        using var chat = h.Client.AsChatClient(agent.Id);

        var updates = new List<ChatResponseUpdate>();
        await Eventually.WithinAsync(Task.Run(async () =>
        {
            await foreach (var u in chat.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Weather in Oslo?")]))
            {
                updates.Add(u);
                if (!workerKnowsTheWatch.Task.IsCompleted)
                {
                    var runId = Guid.Parse(u.ResponseId!);
                    await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the worker learns of the watch");
                    workerKnowsTheWatch.SetResult();
                }

                if (u.Text.Length > 0)
                {
                    firstPiece.TrySetResult();
                }
            }
        }), "the stream to end");

        Assert.True(updates.Count(u => u.Text.Length > 0) > 1, "the answer arrived in several pieces");
        Assert.Equal(answer, string.Concat(updates.Select(u => u.Text)));
        var call = Assert.Single(updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>());
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Oslo", call.Arguments!["city"]!.ToString());
        var result = Assert.Single(updates.SelectMany(u => u.Contents).OfType<FunctionResultContent>());
        Assert.Equal(call.CallId, result.CallId);
        Assert.Equal("sunny in Oslo", result.Result);
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);
        Assert.Null(updates[^1].ContinuationToken);
        Assert.All(updates[..^1], u => Assert.NotNull(u.ContinuationToken));
        Assert.Single(updates.Select(u => u.ConversationId).Distinct());

        var response = updates.ToChatResponse();
        Assert.Equal(answer, response.Messages[^1].Text);
    }

    [DatabaseFact]
    public async Task GetStreamingResponseAsync_ARetriedTool_IsOneFunctionCallWithOneResult()
    {
        // The tool's first attempt holds until the caller received the call, then fails: the retry starts the same execution
        // again (a second ToolCallStartedEvent), which is not a second call of the model's.
        var callReceived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var attempts = 0;
        await using var h = await Harness.StartAsync(db, tools: new TestTool("get_weather", async (_, input, cancellationToken) =>
        {
            if (Interlocked.Increment(ref attempts) == 1)
            {
                await callReceived.Task.WaitAsync(cancellationToken);
                throw new InvalidOperationException("the weather service timed out");
            }

            return "sunny in " + input.GetProperty("city").GetString();
        }, s_citySchema));
        var agent = await h.AgentAsync(a => a with { Tools = ["get_weather"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("get_weather", new { city = "Oslo" }) : FakeReply.Text("Sunny."));
        using var chat = h.Client.AsChatClient(agent.Id);

        var updates = new List<ChatResponseUpdate>();
        await Eventually.WithinAsync(Task.Run(async () =>
        {
            await foreach (var u in chat.GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Weather in Oslo?")]))
            {
                updates.Add(u);
                if (u.Contents.OfType<FunctionCallContent>().Any())
                {
                    callReceived.TrySetResult();
                }
            }
        }), "the stream to end");

        Assert.Equal(2, attempts);
        var call = Assert.Single(updates.SelectMany(u => u.Contents).OfType<FunctionCallContent>());
        var result = Assert.Single(updates.SelectMany(u => u.Contents).OfType<FunctionResultContent>());
        Assert.Equal(call.CallId, result.CallId);
        Assert.Equal("sunny in Oslo", result.Result);
        Assert.Equal("Sunny.", updates.ToChatResponse().Text);
    }

    [DatabaseFact]
    public async Task GetStreamingResponseAsync_ResumedWithAContinuationToken_GivesTheRestOfTheAnswer()
    {
        string opening = string.Concat(Enumerable.Range(1, 6).Select(i => $"Part {i} of the answer. ")),
            rest = string.Concat(Enumerable.Range(7, 6).Select(i => $"Part {i} of the answer. "));
        // The answer comes in two model calls with a tool call between them, held until the first connection dropped: the rest
        // of the answer cannot have been written before the resume, whatever the timing. (A single answer could finish before
        // the first connection reads its first piece, which then holds all of it.)
        var dropped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var h = await Harness.StartAsync(db, tools: new TestTool("read_more", async (_, _, cancellationToken) =>
        {
            await dropped.Task.WaitAsync(cancellationToken);
            return "the rest";
        }));
        var agent = await h.AgentAsync(a => a with { Tools = ["read_more"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.Message(FakeContentBlock.Text(opening), FakeContentBlock.ToolUse("read_more", new { })) with
            {
                StopReason = FakeStopReason.ToolUse, EventDelay = TimeSpan.FromMilliseconds(15),
            }
            : FakeReply.Text(rest) with { EventDelay = TimeSpan.FromMilliseconds(15) });
        var web1 = await h.AddClientAsync(start: false);
        var web2 = await h.AddClientAsync(start: false);

        // The first connection drops after the first piece of text.
        var before = new List<ChatResponseUpdate>();
        await foreach (var u in web1.AsChatClient(agent.Id).GetStreamingResponseAsync([new ChatMessage(ChatRole.User, "Tell me everything")]))
        {
            before.Add(u);
            if (u.Text.Length > 0)
            {
                break;
            }
        }

        // Another process resumes from the last update it delivered.
        dropped.SetResult();
        var after = new List<ChatResponseUpdate>();
        await Eventually.WithinAsync(Task.Run(async () =>
        {
            await foreach (var u in web2.AsChatClient(agent.Id).GetStreamingResponseAsync([], new ChatOptions { ContinuationToken = before[^1].ContinuationToken }))
            {
                after.Add(u);
            }
        }), "the resumed stream to end");

        Assert.True(after.Any(u => u.Text.Length > 0), "text arrived after the resume");
        Assert.Equal(opening + rest, string.Concat(before.Concat(after).Select(u => u.Text)));
        Assert.Equal(before[0].ResponseId, after[^1].ResponseId);
        Assert.Equal(before[0].ConversationId, after[^1].ConversationId);
        Assert.Equal(ChatFinishReason.Stop, after[^1].FinishReason);
    }
}
