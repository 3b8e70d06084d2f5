using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Claude;
using AgentPg.Storage;

namespace AgentPg.Tests.Unit.Claude;

public sealed class RequestBuilderTests
{
    private static readonly AgentDefinition s_agent = new() { Name = "a", Model = "claude-sonnet-4-5", SystemPrompt = "Be brief." };

    private static Message Msg(MessageRole role, params ContentBlock[] blocks) => new() { Role = role, Content = blocks };

    private static ContentBlock Text(string text) => new() { Type = ContentTypes.Text, Text = text };

    private static ContentBlock Raw(string json) => new() { Type = "other", Raw = JsonDocument.Parse(json).RootElement.Clone() };

    [Fact]
    public void Messages_ConsecutiveSameRoleTurns_AreMergedInOrder()
    {
        var messages = RequestBuilder.Messages(
        [
            Msg(MessageRole.User, Text("one")),
            Msg(MessageRole.User, Text("two")),
            Msg(MessageRole.Assistant, Text("three")),
            Msg(MessageRole.Assistant, Text("four")),
            Msg(MessageRole.User, Text("five")),
        ]);

        Assert.Equal(
            """[{"role":"user","content":[{"type":"text","text":"one"},{"type":"text","text":"two"}]},""" +
            """{"role":"assistant","content":[{"type":"text","text":"three"},{"type":"text","text":"four"}]},""" +
            """{"role":"user","content":[{"type":"text","text":"five"}]}]""",
            messages.ToJsonString());
    }

    [Fact]
    public void Messages_SystemMessages_AreSentAsUserTurns_AndMergedWithTheirNeighbours()
    {
        var messages = RequestBuilder.Messages([Msg(MessageRole.User, Text("hi")), Msg(MessageRole.System, Text("summary"))]);

        var turn = Assert.Single(messages)!.AsObject();
        Assert.Equal("user", (string?)turn["role"]);
        Assert.Equal(2, turn["content"]!.AsArray().Count);
    }

    [Fact]
    public void Messages_EmptyMessagesAndEmptyTextBlocks_AreSkipped_SoTurnsAroundThemMerge()
    {
        var messages = RequestBuilder.Messages(
        [
            Msg(MessageRole.User, Text("a")),
            Msg(MessageRole.Assistant, Text("")),
            Msg(MessageRole.Assistant, Raw("""{"type":"text","text":""}""")),
            Msg(MessageRole.User, Text("b")),
        ]);

        Assert.Equal("""[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}]""", messages.ToJsonString());
    }

    [Theory]
    [InlineData("""{"type":"text","text":"hi","citations":[{"type":"char_location","cited_text":"x"}]}""")]
    [InlineData("""{"type":"thinking","thinking":"hmm","signature":"sig=="}""")]
    [InlineData("""{"type":"redacted_thinking","data":"abc"}""")]
    [InlineData("""{"type":"tool_use","id":"toolu_1","name":"t","input":{"a":[1,{"b":null}]}}""")]
    [InlineData("""{"type":"server_tool_use","id":"srvtoolu_1","name":"web_search","input":{"query":"q"}}""")]
    [InlineData("""{"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[{"type":"web_search_result","url":"https://e.x","title":"t"}]}""")]
    public void ToApiBlock_ABlockClaudeSent_GoesBackVerbatim(string json)
    {
        var block = Assert.Single(MessageContent.Read(MessageContent.FromClaude([JsonNode.Parse(json)!.AsObject()])));

        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(json), RequestBuilder.ToApiBlock(block)));
    }

    [Fact]
    public void MessageContent_StoredBlocks_ReadIntoTheirTypedFields()
    {
        var blocks = MessageContent.Read("""
            [{"type":"thinking","thinking":"hmm","signature":"sig=="},
             {"type":"text","text":"hi"},
             {"type":"tool_use","id":"toolu_1","name":"lookup","input":{"q":"x"}},
             {"type":"mcp_tool_use","id":"mcptoolu_1","name":"fetch","server_name":"s"},
             {"type":"web_search_tool_result","tool_use_id":"srvtoolu_1","content":[]},
             {"type":"tool_result","tool_use_id":"toolu_1","content":"42","is_error":true},
             {"type":"tool_result","tool_use_id":"toolu_2"},
             {"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]
            """);

        Assert.Equal(["thinking", "text", "tool_use", "mcp_tool_use", "web_search_tool_result", "tool_result", "tool_result", "image"], blocks.Select(b => b.Type));
        Assert.Equal(("hmm", "sig=="), (blocks[0].Text, blocks[0].Signature));
        Assert.Equal("hi", blocks[1].Text);
        Assert.Equal(("toolu_1", "lookup", """{"q":"x"}"""), (blocks[2].ToolUseId, blocks[2].ToolName, blocks[2].ToolInput?.GetRawText()));
        Assert.Equal(("mcptoolu_1", "{}"), (blocks[3].ToolUseId, blocks[3].ToolInput?.GetRawText()));
        Assert.Equal(("srvtoolu_1", null), (blocks[4].ToolResultForUseId, blocks[4].ToolContent));
        Assert.Equal(("toolu_1", "42", true), (blocks[5].ToolResultForUseId, blocks[5].ToolContent, blocks[5].IsError));
        Assert.Equal(("", false), (blocks[6].ToolContent, blocks[6].IsError));
        Assert.Equal("image/png", blocks[7].Source?.GetProperty("media_type").GetString());
        Assert.All(blocks, b => Assert.NotNull(b.Raw));
    }

    [Fact]
    public void MessageContent_ToolResultWithContentBlocks_KeepsItsTextFormButNeverSendsIt()
    {
        var block = Assert.Single(MessageContent.Read("""
            [{"type":"tool_result","tool_use_id":"toolu_1","agentpg_text":"chart\n[image: image/png, 1 bytes]",
              "content":[{"type":"text","text":"chart"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}]
            """));

        Assert.Equal("chart\n[image: image/png, 1 bytes]", block.ToolContent);
        Assert.Equal([ContentTypes.Text, ContentTypes.Image], block.ToolContentBlocks.Select(b => b.Type));
        Assert.False(block.Raw!.Value.TryGetProperty(MessageContent.TextKey, out _));
        Assert.Equal(
            """{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"chart"},{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}""",
            RequestBuilder.ToApiBlock(block)!.ToJsonString());
    }

    [Fact]
    public void ToApiBlock_StoredToolUseWithoutRaw_IsRebuilt()
    {
        var block = new ContentBlock
        {
            Type = ContentTypes.ToolUse,
            ToolUseId = "toolu_9",
            ToolName = "lookup",
            ToolInput = JsonDocument.Parse("""{"q":"x"}""").RootElement.Clone(),
        };

        Assert.Equal("""{"type":"tool_use","id":"toolu_9","name":"lookup","input":{"q":"x"}}""", RequestBuilder.ToApiBlock(block)!.ToJsonString());
    }

    [Fact]
    public void ToApiBlock_ToolResult_CarriesContentAndErrorOnlyWhenSet()
    {
        var ok = RequestBuilder.ToApiBlock(new ContentBlock { Type = ContentTypes.ToolResult, ToolResultForUseId = "toolu_1", ToolContent = "42" });
        var failed = RequestBuilder.ToApiBlock(new ContentBlock { Type = ContentTypes.ToolResult, ToolResultForUseId = "toolu_2", IsError = true });

        Assert.Equal("""{"type":"tool_result","tool_use_id":"toolu_1","content":"42"}""", ok!.ToJsonString());
        Assert.Equal("""{"type":"tool_result","tool_use_id":"toolu_2","is_error":true}""", failed!.ToJsonString());
    }

    [Fact]
    public void ToApiBlock_ImageWithoutSource_AndUnknownTypes_AreDropped()
    {
        Assert.Null(RequestBuilder.ToApiBlock(new ContentBlock { Type = ContentTypes.Image }));
        Assert.Null(RequestBuilder.ToApiBlock(new ContentBlock { Type = "other" }));
    }

    [Theory]
    [InlineData(null, null, "Be brief.")]
    [InlineData("Only this.", "ignored", "Only this.")]
    [InlineData(null, "Also this.", "Be brief.\n\nAlso this.")]
    public void SystemPrompt_OverrideWins_AppendAddsAParagraph(string? overrideInstructions, string? append, string expected)
        => Assert.Equal(expected, RequestBuilder.SystemPrompt(s_agent, overrideInstructions, append));

    [Fact]
    public void SystemPrompt_AgentWithoutPromptAndNoAppend_IsNull()
        => Assert.Null(RequestBuilder.SystemPrompt(s_agent with { SystemPrompt = null }, null, null));

    [Fact]
    public void Body_OmitsEmptySystemAndTools_AndCarriesSamplingParameters()
    {
        var plain = RequestBuilder.Body(s_agent, 100, null, [], []);
        var sampled = RequestBuilder.Body(s_agent with { Temperature = 0.5, TopK = 5 }, 100, "sys",
            [], [RequestBuilder.ToolDefinition("t", "d", new JsonObject { ["type"] = "object" })]);

        Assert.Equal(["max_tokens", "messages", "model"], plain.Keys.Order());
        Assert.Equal(["max_tokens", "messages", "model", "system", "temperature", "tools", "top_k"], sampled.Keys.Order());
        Assert.Equal(0.5, sampled["temperature"].GetDouble());
    }
}
