using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Tools;

/// <summary>Tools that return content blocks (<see cref="IContentTool"/>): images and documents reach Claude as blocks of
/// the tool_result, are stored with the conversation and sent again on later turns; error results reach Claude as
/// is_error tool_results with their content.</summary>
public sealed class ContentToolTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly byte[] s_png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52];

    private sealed class ContentTool(string name, Func<int, ToolResult> result) : IContentTool
    {
        private int _calls;

        public int Calls => _calls;

        public string Name { get; } = name;

        public string Description => "Returns content blocks";

        public ToolSchema InputSchema { get; } = new();

        public Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
            => Task.FromResult(result(Interlocked.Increment(ref _calls)));
    }

    [DatabaseFact]
    public async Task ImageAndDocument_ReachClaudeAsToolResultBlocks_AreStored_AndAreSentAgainOnTheNextTurn()
    {
        var tool = new ContentTool("chart", _ => ToolResult.FromContent(
            new TextContent("the chart"), new DataContent(s_png, "image/png"), new DataContent("%PDF-1.7\n"u8.ToArray(), "application/pdf")));
        await using var h = await Harness.StartAsync(db, null, start: true, tool);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        var session = await h.Client.NewSessionAsync();
        var results = new List<FakeToolResult>();
        h.Claude.Respond(request =>
        {
            lock (results)
            {
                results.AddRange(request.ToolResults);
            }

            return request.ToolResults.Count > 0 ? FakeReply.Text("I see a chart") : FakeReply.ToolUse("chart", new { });
        });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "draw");

        Assert.Equal("I see a chart", response.Text);
        var result = Assert.Single(results);
        Assert.False(result.IsError);
        Assert.Equal(["text", "image", "document"], result.Blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal(Convert.ToBase64String(s_png), result.Blocks[1].GetProperty("source").GetProperty("data").GetString());
        Assert.Equal("the chart", result.Content);

        var call = Assert.Single(await h.Client.GetRunToolCallsAsync(response.RunId));
        Assert.Equal(ToolExecutionState.Completed, call.State);
        Assert.Equal("the chart\n[image: image/png, 16 bytes]\n[document: application/pdf, 9 bytes]", call.Output);
        Assert.Equal([ContentTypes.Text, ContentTypes.Image, ContentTypes.Document], call.OutputBlocks.Select(b => b.Type));
        Assert.Equal("base64", call.OutputBlocks[1].Source!.Value.GetProperty("type").GetString());
        var stored = (await h.Client.GetMessagesAsync(session)).SelectMany(m => m.Content).Single(b => b.Type == ContentTypes.ToolResult);
        Assert.Equal(call.Output, stored.ToolContent);
        Assert.Equal([ContentTypes.Text, ContentTypes.Image, ContentTypes.Document], stored.ToolContentBlocks.Select(b => b.Type));

        // The next turn of the session replays the conversation: the image is sent again, exactly as stored.
        h.Claude.Respond(_ => FakeReply.Text("still a chart"));
        await h.Client.RunFastSyncAsync(session, agent.Id, "and now?");
        var replayed = h.Claude.Requests.Last(r => r.IsMessagesCall).Body!.Value.GetProperty("messages").EnumerateArray()
            .SelectMany(m => m.GetProperty("content").ValueKind == JsonValueKind.Array ? m.GetProperty("content").EnumerateArray() : [])
            .Single(b => b.GetProperty("type").GetString() == "tool_result");
        Assert.Equal(JsonValueKind.Array, replayed.GetProperty("content").ValueKind);
        Assert.Equal(Convert.ToBase64String(s_png), replayed.GetProperty("content")[1].GetProperty("source").GetProperty("data").GetString());
        // The stored text form stays in the database: Claude's API refuses fields it does not know.
        Assert.DoesNotContain(replayed.EnumerateObject(), p => p.Name.StartsWith("agentpg", StringComparison.Ordinal));
    }

    [DatabaseFact]
    public async Task ErrorResult_ReachesClaudeAsIsErrorWithItsContent_AndIsNotRetried()
    {
        var tool = new ContentTool("inspect", _ => new ToolResult { Content = [new TextContent("the part is cracked"), new DataContent(s_png, "image/png")], IsError = true });
        await using var h = await Harness.StartAsync(db, o => o.ToolRetry.MaxAttempts = 3, start: true, tool);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        FakeToolResult? received = null;
        h.Claude.Respond(request =>
        {
            if (request.ToolResults.Count == 0)
            {
                return FakeReply.ToolUse("inspect", new { });
            }

            received = request.ToolResults[0];
            return FakeReply.Text("it is cracked");
        });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "inspect it");

        Assert.NotNull(received);
        Assert.True(received.IsError);
        Assert.Equal(["text", "image"], received.Blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("the part is cracked", received.Blocks[0].GetProperty("text").GetString());
        Assert.Equal(1, tool.Calls);
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Failed, call.State);
        Assert.True(call.IsError);
        Assert.Equal("the part is cracked\n[image: image/png, 16 bytes]", call.ErrorMessage);
    }

    [DatabaseFact]
    public async Task ContentClaudeWouldRefuse_IsDescribedInText_AndTheSessionKeepsWorking()
    {
        var tool = new ContentTool("scan", _ => ToolResult.FromContent(new DataContent("not really a png"u8.ToArray(), "image/png")));
        await using var h = await Harness.StartAsync(db, null, start: true, tool);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        var session = await h.Client.NewSessionAsync();
        FakeToolResult? received = null;
        h.Claude.Respond(request =>
        {
            if (request.ToolResults.Count == 0)
            {
                return FakeReply.ToolUse("scan", new { });
            }

            received = request.ToolResults[0];
            return FakeReply.Text("no image");
        });

        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "scan");

        Assert.Equal("no image", response.Text);
        Assert.NotNull(received);
        Assert.Empty(received.Blocks);
        Assert.Equal("[image: image/png, 16 bytes; not shown: the bytes are not a PNG image]", received.Content);
        h.Claude.Respond(_ => FakeReply.Text("fine"));
        Assert.Equal("fine", (await h.Client.RunFastSyncAsync(session, agent.Id, "again")).Text);
    }

    [DatabaseFact]
    public async Task HybridCompaction_PrunesOldImageResults_SoTheImagesAreNoLongerSent()
    {
        var tool = new ContentTool("snap", _ => ToolResult.FromContent(new TextContent("snap"), new DataContent(s_png, "image/png")));
        await using var h = await Harness.StartAsync(db, null, start: true, tool);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        var session = await h.Client.NewSessionAsync();
        h.Claude.Respond(request => request.ToolResults.Count > 0 || !request.HasTool("snap") ? FakeReply.Text("seen") : FakeReply.ToolUse("snap", new { }));
        for (var i = 0; i < 5; i++)
        {
            await h.Client.RunFastSyncAsync(session, agent.Id, $"take picture {i}");
        }

        var result = await h.Client.CompactAsync(session, new CompactionOptions
        {
            Strategy = CompactionStrategy.Hybrid,
            ProtectedTokens = 50,
            PreserveLastN = 2,
            TargetTokens = 100_000,
            MaxTokensForModel = 200_000,
        });

        Assert.True(result.MessagesPruned > 0);
        var results = (await h.Client.GetMessagesAsync(session)).SelectMany(m => m.Content).Where(b => b.Type == ContentTypes.ToolResult).ToList();
        var pruned = results.Where(b => b.ToolContent == "[TOOL OUTPUT PRUNED]").ToList();
        Assert.NotEmpty(pruned);
        Assert.All(pruned, b => Assert.Empty(b.ToolContentBlocks));
        Assert.Contains(results, b => b.ToolContentBlocks.Count == 2);   // the protected tail keeps its images

        h.Claude.Respond(_ => FakeReply.Text("after"));
        await h.Client.RunFastSyncAsync(session, agent.Id, "after pruning");
        var sent = h.Claude.Requests.Last(r => r.IsMessagesCall).Body!.Value.GetProperty("messages").EnumerateArray()
            .SelectMany(m => m.GetProperty("content").ValueKind == JsonValueKind.Array ? m.GetProperty("content").EnumerateArray() : [])
            .Where(b => b.GetProperty("type").GetString() == "tool_result")
            .Count(b => b.GetProperty("content").ValueKind == JsonValueKind.Array);
        Assert.Equal(results.Count - pruned.Count, sent);
    }

    [DatabaseFact]
    public async Task FunctionTool_DelegateReturningDataContent_SendsTheImageAsABlock_AndOtherResultsStayText()
    {
        var chart = FunctionTool.Create("chart", "Draws a chart", (int quarter) => new AIContent[] { new TextContent($"Q{quarter}"), new DataContent(s_png, "image/png") });
        var count = FunctionTool.Create("count", "Counts", (int n) => new { n, doubled = n * 2 });
        await using var h = await Harness.StartAsync(db, null, start: true, chart, count);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        var results = new List<FakeToolResult>();
        h.Claude.Respond(request =>
        {
            if (request.ToolResults.Count == 0)
            {
                return FakeReply.Message(FakeContentBlock.ToolUse("chart", new { quarter = 3 }), FakeContentBlock.ToolUse("count", new { n = 4 })) with { StopReason = "tool_use" };
            }

            lock (results)
            {
                results.AddRange(request.ToolResults);
            }

            return FakeReply.Text("done");
        });

        await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "chart and count");

        Assert.Equal(2, results.Count);
        Assert.Equal(["text", "image"], results[0].Blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("Q3", results[0].Content);
        Assert.Empty(results[1].Blocks);
        Assert.Equal(8, JsonDocument.Parse(results[1].Content).RootElement.GetProperty("doubled").GetInt32());
        Assert.Equal("Q3\n[image: image/png, 16 bytes]", await ((ITool)chart).ExecuteAsync(ToolContext.Create(), JsonDocument.Parse("""{"quarter":3}""").RootElement, CancellationToken.None));
    }
}
