using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

public sealed class StreamingRunTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly ToolSchema s_weatherSchema = new()
    {
        Properties = new Dictionary<string, PropertyDef>
        {
            ["city"] = new() { Type = "string", Description = "City name" },
        },
        Required = ["city"],
    };

    private static TestTool Weather() => new("get_weather", (_, input, _) => Task.FromResult($"18 C and sunny in {input.GetProperty("city").GetString()}"), s_weatherSchema);

    [DatabaseFact]
    public async Task RunFastSyncAsync_ToolRoundTrip_PersistsTheReferenceMessageSequence()
    {
        await using var h = await Harness.StartAsync(db, tools: Weather());
        var agent = await h.AgentAsync(a => a with { Tools = ["get_weather"] });
        var session = await h.Client.NewSessionAsync();
        h.Claude.Enqueue(
            FakeReply.Message(FakeContentBlock.Text("Let me check."), FakeContentBlock.ToolUse("get_weather", new { city = "Paris" }, "toolu_weather1"))
                with { Usage = new FakeUsage { InputTokens = 100, OutputTokens = 20 } },
            FakeReply.Text("It is 18 C and sunny in Paris.") with { Usage = new FakeUsage { InputTokens = 150, OutputTokens = 12 } });

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "What's the weather in Paris?"), "the run to complete");

        Assert.Equal("It is 18 C and sunny in Paris.", response.Text);
        Assert.Equal("end_turn", response.StopReason);
        Assert.Equal(2, response.IterationCount);
        Assert.Equal(1, response.ToolIterations);
        Assert.Equal(new Usage { InputTokens = 250, OutputTokens = 32 }, response.Usage);
        Assert.Equal(response.Usage, response.TotalUsage);
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal("get_weather", call.Name);
        Assert.Equal("Paris", call.Input.GetProperty("city").GetString());
        Assert.Equal("18 C and sunny in Paris", call.Output);
        Assert.False(call.IsError);
        Assert.Equal(1, call.IterationNumber);
        Assert.Equal(ToolExecutionState.Completed, call.State);
        Assert.Equal("It is 18 C and sunny in Paris.", Assert.Single(response.Message!.Content).Text);

        var messages = await h.Client.GetMessagesAsync(session);
        Assert.Equal([MessageRole.User, MessageRole.Assistant, MessageRole.User, MessageRole.Assistant], messages.Select(m => m.Role));
        Assert.Equal("What's the weather in Paris?", Assert.Single(messages[0].Content).Text);
        Assert.Equal([ContentTypes.Text, ContentTypes.ToolUse], messages[1].Content.Select(b => b.Type));
        Assert.Equal("toolu_weather1", messages[1].Content[1].ToolUseId);
        var result = Assert.Single(messages[2].Content);
        Assert.Equal(ContentTypes.ToolResult, result.Type);
        Assert.Equal("toolu_weather1", result.ToolResultForUseId);
        Assert.Equal("18 C and sunny in Paris", result.ToolContent);
        Assert.All(messages, m => Assert.Equal(response.RunId, m.RunId));
        Assert.Equal(new Usage { InputTokens = 100, OutputTokens = 20 }, messages[1].Usage);

        // The second request carried the conversation with the tool_use echoed verbatim and its result.
        var second = h.Claude.Requests.Where(r => r.IsMessagesCall).ElementAt(1);
        var sent = second.Body!.Value.GetProperty("messages");
        Assert.Equal(3, sent.GetArrayLength());
        Assert.Equal("toolu_weather1", sent[1].GetProperty("content")[1].GetProperty("id").GetString());
        Assert.Equal("tool_result", sent[2].GetProperty("content")[0].GetProperty("type").GetString());

        var iterations = await h.Client.GetIterationsAsync(response.RunId);
        Assert.Equal([1, 2], iterations.Select(i => i.IterationNumber));
        Assert.Equal(["user_prompt", "tool_results"], iterations.Select(i => i.TriggerType));
        Assert.Equal(["tool_use", "end_turn"], iterations.Select(i => i.StopReason));
        Assert.True(iterations[0].HasToolUse);
        Assert.Equal(1, iterations[0].ToolExecutionCount);
        Assert.Equal(new Usage { InputTokens = 100, OutputTokens = 20 }, iterations[0].Usage);
        Assert.All(iterations, i => Assert.True(i.IsStreaming));
        Assert.Single(await h.Client.GetIterationToolCallsAsync(iterations[0].Id));

        var run = await h.Client.GetRunAsync(response.RunId);
        Assert.Equal(RunState.Completed, run.State);
        Assert.Equal(RunState.Streaming, run.PreviousState);
        Assert.NotNull(run.FinalizedAt);
        Assert.Null(run.ClaimedByInstanceId);
        Assert.Equal(2, run.ClaimEpoch);
    }
}
