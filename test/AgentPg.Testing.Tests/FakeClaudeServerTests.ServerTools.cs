using System.Text.Json;
using System.Text.Json.Nodes;
using Anthropic;
using Anthropic.Models.Messages;

namespace AgentPg.Testing.Tests;

public sealed partial class FakeClaudeServerTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Create_WebSearchFromTheSdk_ScriptedServerToolTurnWithPauseTurn_ComesBackAsTheSdksServerBlocks(bool streaming)
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        FakeRequest? seen = null;
        var search = FakeContentBlock.ServerToolUse("web_search", new { query = "weather in Paris" }, "srvtoolu_01Search");
        var results = FakeContentBlock.WebSearchToolResult("srvtoolu_01Search", ("https://example.org/paris", "Paris weather"), ("https://example.org/fr", "France"));
        claude.Respond(request =>
        {
            seen = request;
            return FakeReply.Message(FakeContentBlock.Text("Searching."), search, results) with { StopReason = FakeStopReason.PauseTurn };
        });
        var parameters = new MessageCreateParams
        {
            Model = Sdk.Model,
            MaxTokens = 1024,
            Messages = [new UserMessageParam("Weather in Paris?")],
            Tools = [new WebSearchTool20250305 { MaxUses = 2, AllowedDomains = ["example.org"] }],
        };

        var message = streaming ? await client.Messages.CreateStreaming(parameters).Aggregate() : await client.Messages.Create(parameters);

        var tool = Assert.Single(seen!.Tools);
        Assert.Equal(("web_search", "web_search_20250305", false), (tool.Name, tool.ServerToolType, tool.DeferLoading));
        Assert.Equal("pause_turn", message.StopReason!.Raw());
        Assert.Equal(3, message.Content.Count);
        Assert.True(message.Content[1].TryPickServerToolUse(out _));
        Assert.True(message.Content[2].TryPickWebSearchToolResult(out _));
        AssertSameJson(search.Json, JsonSerializer.SerializeToElement(message.Content[1]));
        AssertSameJson(results.Json, JsonSerializer.SerializeToElement(message.Content[2]));
    }

    [Fact]
    public async Task Create_ToolSearchWithDeferredTools_IsAccepted_AndAScriptedToolSearchResultParses()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        FakeRequest? seen = null;
        claude.Respond(request =>
        {
            seen = request;
            return FakeReply.Message(
                FakeContentBlock.ServerToolUse("tool_search_tool_bm25", new { query = "weather" }, "srvtoolu_01Find"),
                FakeContentBlock.ToolSearchToolResult("srvtoolu_01Find", "get_weather"),
                FakeContentBlock.ToolUse("get_weather", new { location = "Paris" })) with { StopReason = FakeStopReason.ToolUse };
        });

        var message = await client.Messages.Create(Sdk.Raw($$"""
            {"model":"{{Sdk.Model}}","max_tokens":256,"messages":[{"role":"user","content":"Weather?"}],"tools":[
              {"name":"get_weather","description":"Weather","input_schema":{"type":"object"},"defer_loading":true},
              {"name":"get_time","description":"Time","input_schema":{"type":"object"},"defer_loading":true},
              {"type":"tool_search_tool_bm25_20251119","name":"tool_search_tool_bm25"}]}
            """));

        Assert.Equal([true, true, false], seen!.Tools.Select(t => t.DeferLoading));
        Assert.True(message.Content[1].TryPickToolSearchToolResult(out _));
        var references = JsonSerializer.SerializeToElement(message.Content[1]).GetProperty("content").GetProperty("tool_references");
        Assert.Equal("get_weather", references[0].GetProperty("tool_name").GetString());
        Assert.Equal("get_weather", Assert.Single(Sdk.ToolUses(message)).Name);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task Create_CitedTextAndSearchUsage_ParseInTheSdk_StreamedAsCitationsDeltas(bool streaming)
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        var citation = FakeCitation.WebSearchResultLocation("https://example.org/paris", "Paris weather", "Sunny, 21 °C");
        claude.Respond(_ => FakeReply.Message(
            FakeContentBlock.ServerToolUse("web_search", new { query = "paris" }, "srvtoolu_01A"),
            FakeContentBlock.WebSearchToolResult("srvtoolu_01A", ("https://example.org/paris", "Paris weather")),
            FakeContentBlock.ServerToolUse("web_fetch", new { url = "https://example.org/paris" }, "srvtoolu_01B"),
            FakeContentBlock.Raw(JsonDocument.Parse("""{"type":"web_fetch_tool_result","tool_use_id":"srvtoolu_01B","content":{"type":"web_fetch_tool_error","error_code":"url_not_accessible"}}""").RootElement),
            FakeContentBlock.CitedText("It is sunny.", citation)));
        var parameters = new MessageCreateParams
        {
            Model = Sdk.Model,
            MaxTokens = 1024,
            Messages = [new UserMessageParam("Weather in Paris?")],
            Tools = [new WebSearchTool20250305(), new WebFetchTool20250910()],
        };

        var message = streaming ? await client.Messages.CreateStreaming(parameters).Aggregate() : await client.Messages.Create(parameters);

        Assert.True(message.Content[4].TryPickText(out var text));
        Assert.Equal("It is sunny.", text!.Text);
        AssertSameJson(JsonSerializer.SerializeToElement(new[] { citation }), JsonSerializer.SerializeToElement(text.Citations));
        Assert.Equal((1L, 1L), (message.Usage.ServerToolUse!.WebSearchRequests, message.Usage.ServerToolUse.WebFetchRequests));
        if (streaming)
        {
            // The server blocks come whole; the cited text's citation comes as a delta before its text.
            var deltas = Sdk.DeltaTypes(await Sdk.CollectAsync(client.Messages.CreateStreaming(parameters)));
            Assert.Equal("citations_delta", deltas[0]);
            Assert.All(deltas.Skip(1), d => Assert.Equal("text_delta", d));
        }
    }

    private static void AssertSameJson(JsonElement expected, JsonElement actual)
        => Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected.GetRawText()), JsonNode.Parse(actual.GetRawText())),
            $"expected {expected.GetRawText()}\nbut got {actual.GetRawText()}");
}
