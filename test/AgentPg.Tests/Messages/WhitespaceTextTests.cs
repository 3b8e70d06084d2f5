using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Messages;

/// <summary>Whitespace Claude writes is not sent back in a form the Messages API refuses: a text block of whitespace only
/// ("messages: text content blocks must contain non-whitespace text") and a final assistant message ending with whitespace
/// ("messages: final assistant content cannot end with trailing whitespace").</summary>
public sealed class WhitespaceTextTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly ToolSchema s_citySchema = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["city"] = new() { Type = "string" } },
        Required = ["city"],
    };

    [DatabaseTheory]
    [InlineData(RunMode.Streaming)]
    [InlineData(RunMode.Batch)]
    public async Task ToolCall_AfterAWhitespaceOnlyTextBlock_ContinuesWithoutSendingTheBlockBack(RunMode mode)
    {
        await using var h = await Harness.StartAsync(db, tools: new TestTool("get_weather", (_, _, _) => Task.FromResult("18 C"), s_citySchema));
        var agent = await h.AgentAsync(a => a with { Tools = ["get_weather"] });
        var session = await h.Client.NewSessionAsync();
        h.Claude.Enqueue(
            FakeReply.Message(FakeContentBlock.Text("\n\n"), FakeContentBlock.ToolUse("get_weather", new { city = "Paris" }, "toolu_ws1")),
            FakeReply.Text("It is 18 C in Paris."));

        var run = mode == RunMode.Batch
            ? h.Client.RunSyncAsync(session, agent.Id, "Weather in Paris?")
            : h.Client.RunFastSyncAsync(session, agent.Id, "Weather in Paris?");
        var response = await Eventually.WithinAsync(run, "the run to complete", TimeSpan.FromSeconds(60));

        Assert.Equal("It is 18 C in Paris.", response.Text);
        // What Claude wrote is stored as it came.
        var stored = (await h.Client.GetMessagesAsync(session))[1];
        Assert.Equal([ContentTypes.Text, ContentTypes.ToolUse], stored.Content.Select(b => b.Type));
        var second = h.Claude.Requests.Where(r => r.IsMessagesCall || (r.Method == "POST" && r.Path == "/v1/messages/batches")).ElementAt(1).Body!.Value;
        var messages = mode == RunMode.Batch ? second.GetProperty("requests")[0].GetProperty("params").GetProperty("messages") : second.GetProperty("messages");
        var assistant = messages[1].GetProperty("content");
        Assert.Equal(["tool_use"], assistant.EnumerateArray().Select(b => b.GetProperty("type").GetString()));
    }

    [DatabaseFact]
    public async Task CompactionStats_OfASessionWhoseLastAnswerEndsWithWhitespace_AreCounted_AndCountingGoesOn()
    {
        // count_tokens gets the conversation as it is, ending with the last answer: Claude refuses a final assistant text
        // ending with whitespace. Before, that refusal was taken for a broken endpoint, and the client stopped counting
        // for every session until restarted.
        await using var h = await Harness.StartAsync(db);
        h.Claude.Respond(_ => FakeReply.Text("Noted.\n"));
        var agent = await h.AgentAsync();
        var first = await h.Client.NewSessionAsync();
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(first, agent.Id, "remember this"), "the first session's run");
        var second = await h.Client.NewSessionAsync();
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(second, agent.Id, "and this"), "the second session's run");

        await h.Client.GetCompactionStatsAsync(first);
        var afterFirst = CountTokensCalls(h);
        await h.Client.GetCompactionStatsAsync(second);

        Assert.Equal(1, afterFirst);
        Assert.Equal(2, CountTokensCalls(h));
        var counted = h.Claude.Requests.Last(r => r.Path.EndsWith("/count_tokens", StringComparison.Ordinal)).Body!.Value.GetProperty("messages");
        Assert.Equal("Noted.", counted[1].GetProperty("content")[0].GetProperty("text").GetString());

        static int CountTokensCalls(Harness h) => h.Claude.Requests.Count(r => r.Path.EndsWith("/count_tokens", StringComparison.Ordinal));
    }

    [DatabaseFact]
    public async Task PauseTurn_WhoseTextEndsWithWhitespace_ContinuesWithTheTextTrimmed()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        h.Claude.Enqueue(
            FakeReply.Text("Still searching the web. \n") with { StopReason = FakeStopReason.PauseTurn },
            FakeReply.Text("Found it."));

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "Search for it."), "the run to complete", TimeSpan.FromSeconds(60));

        Assert.Equal("end_turn", response.StopReason);
        var continuation = h.Claude.Requests.Where(r => r.IsMessagesCall).ElementAt(1).Body!.Value.GetProperty("messages");
        var paused = continuation[continuation.GetArrayLength() - 1];
        Assert.Equal("assistant", paused.GetProperty("role").GetString());
        Assert.Equal("Still searching the web.", paused.GetProperty("content")[0].GetProperty("text").GetString());
    }
}
