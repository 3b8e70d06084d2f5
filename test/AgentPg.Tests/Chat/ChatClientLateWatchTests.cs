using System.Buffers.Binary;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Chat;

/// <summary>The chat client's text when its watch starts after (part of) the run's answer was streamed: deltas are only published
/// while a run is watched, so the stored answer must fill in what they did not bring, and nothing twice.</summary>
public sealed class ChatClientLateWatchTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static readonly ToolSchema s_citySchema = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["city"] = new() { Type = "string" } },
        Required = ["city"],
    };

    /// <summary>The token a chat client hands out for a run before its first event (run id, sequence 0): the same path as a
    /// response whose watch starts when the run is already over.</summary>
    private static ResponseContinuationToken FromTheStart(Guid runId)
    {
        var bytes = new byte[24];
        runId.TryWriteBytes(bytes);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(16), 0);
        return ResponseContinuationToken.FromBytes(bytes);
    }

    private static async Task<List<ChatResponseUpdate>> StreamAsync(IChatClient chat, ChatOptions options)
    {
        var updates = new List<ChatResponseUpdate>();
        await foreach (var u in chat.GetStreamingResponseAsync([], options))
        {
            updates.Add(u);
        }

        return updates;
    }

    [DatabaseFact]
    public async Task Chat_WatchStartsAfterTheRunFinished_TheTextIsTheStoredAnswer()
    {
        const string answer = "A short answer that was streamed before anybody watched the run.";
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text(answer));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "answer fast");
        var stored = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run", s_timeout);
        Assert.Equal(answer, stored.Text);
        using var chat = (await h.AddClientAsync(start: false)).AsChatClient(agent.Id);

        var updates = await Eventually.WithinAsync(StreamAsync(chat, new ChatOptions { ContinuationToken = FromTheStart(runId) }), "the stream", s_timeout);
        Assert.Equal(answer, string.Concat(updates.Select(u => u.Text)));
        Assert.Equal(ChatFinishReason.Stop, updates[^1].FinishReason);

        var response = await Eventually.WithinAsync(chat.GetResponseAsync([], new ChatOptions { ContinuationToken = FromTheStart(runId) }), "the response",
            s_timeout);
        Assert.Equal(answer, response.Text);
        Assert.Equal(runId.ToString(), response.ResponseId);
        Assert.Equal(session.ToString(), response.ConversationId);

        // Resuming after the stored answer's update gives nothing more of it.
        var rest = await Eventually.WithinAsync(StreamAsync(chat, new ChatOptions { ContinuationToken = updates.Last(u => u.Text.Length > 0).ContinuationToken }),
            "the resumed stream", s_timeout);
        Assert.Equal("", string.Concat(rest.Select(u => u.Text)));
    }

    [DatabaseFact]
    public async Task Chat_WatchStartsBetweenIterations_TheFirstAnswerComesFromItsStoredMessage_TheSecondStreams_NothingTwice()
    {
        const string first = "Let me check the weather first.";
        var second = string.Concat(Enumerable.Range(1, 10).Select(i => $"Part {i} of the forecast. "));
        var toolStarted = new TaskCompletionSource();
        var releaseTool = new TaskCompletionSource();
        await using var h = await Harness.StartAsync(db, tools: new TestTool("get_weather", async (_, input, ct) =>
        {
            toolStarted.TrySetResult();
            await releaseTool.Task.WaitAsync(ct);
            return "sunny in " + input.GetProperty("city").GetString();
        }, s_citySchema));
        var agent = await h.AgentAsync(a => a with { Tools = ["get_weather"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.Message(FakeContentBlock.Text(first), FakeContentBlock.ToolUse("get_weather", new { city = "Oslo" })) with { StopReason = "tool_use" }
            : FakeReply.Text(second) with { EventDelay = TimeSpan.FromMilliseconds(20) });
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "Weather in Oslo?");
        await Eventually.WithinAsync(toolStarted.Task, "the tool to start (the first answer is stored, nobody watched it)", s_timeout);
        using var chat = (await h.AddClientAsync(start: false)).AsChatClient(agent.Id);

        var updates = new List<ChatResponseUpdate>();
        await Eventually.WithinAsync(Task.Run(async () =>
        {
            await foreach (var u in chat.GetStreamingResponseAsync([], new ChatOptions { ContinuationToken = FromTheStart(runId) }))
            {
                updates.Add(u);
                releaseTool.TrySetResult();
            }
        }), "the stream", s_timeout);

        var stored = await h.Client.GetMessagesAsync(session);
        var assistantTexts = stored.Where(m => m.Role == MessageRole.Assistant).Select(m => string.Concat(m.Content.Where(b => b.Type == "text").Select(b => b.Text))).ToList();
        Assert.Equal([first, second], assistantTexts);
        Assert.Equal(first + second, string.Concat(updates.Select(u => u.Text)));
        var response = updates.ToChatResponse();
        Assert.Equal(first, response.Messages.First(m => m.MessageId == $"{runId}:1").Text);
        Assert.Equal(second, response.Messages.Last(m => m.Role == ChatRole.Assistant).Text);
    }
}
