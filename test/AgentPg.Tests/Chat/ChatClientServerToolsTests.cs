using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.AI;

namespace AgentPg.Tests.Chat;

/// <summary>Claude's server tools through AsChatClient: their calls and results as Microsoft.Extensions.AI's hosted-tool
/// contents, citations as CitationAnnotations, and ChatOptions.Tools' hosted tools checked against the agent's.</summary>
public sealed class ChatClientServerToolsTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static FakeRawBlock Raw(string json) => FakeContentBlock.Raw(JsonDocument.Parse(json).RootElement);

    [DatabaseFact]
    public async Task GetResponseAsync_WebSearchAndCodeExecution_AreHostedToolContents_AndCitationsAnnotateTheText()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { ServerTools = [ServerTool.WebSearch(), ServerTool.CodeExecution(), ServerTool.WebFetch()] });
        h.Claude.Respond(_ => FakeReply.Message(
            FakeContentBlock.ServerToolUse("web_search", new { query = "paris weather" }, "srvtoolu_01Search"),
            FakeContentBlock.WebSearchToolResult("srvtoolu_01Search", ("https://example.org/paris", "Paris weather")),
            FakeContentBlock.ServerToolUse("bash_code_execution", new { command = "echo 21" }, "srvtoolu_01Bash"),
            Raw("""{"type":"bash_code_execution_tool_result","tool_use_id":"srvtoolu_01Bash","content":{"type":"bash_code_execution_result","stdout":"21\n","stderr":"","return_code":0,"content":[]}}"""),
            FakeContentBlock.ServerToolUse("web_fetch", new { url = "https://example.org/gone" }, "srvtoolu_01Fetch"),
            Raw("""{"type":"web_fetch_tool_result","tool_use_id":"srvtoolu_01Fetch","content":{"type":"web_fetch_tool_error","error_code":"url_not_accessible"}}"""),
            FakeContentBlock.CitedText("It is sunny in Paris.",
                FakeCitation.WebSearchResultLocation("https://example.org/paris", "Paris weather", "Sunny, 21 °C"))));
        using var chat = h.Client.AsChatClient(agent.Id);

        var response = await Eventually.WithinAsync(chat.GetResponseAsync([new ChatMessage(ChatRole.User, "Weather in Paris?")],
            new ChatOptions { Tools = [new HostedWebSearchTool(), new HostedCodeInterpreterTool()] }), "the answer");

        Assert.Equal("It is sunny in Paris.", response.Text);
        var contents = response.Messages.SelectMany(m => m.Contents).ToList();
        var search = Assert.Single(contents.OfType<WebSearchToolCallContent>());
        Assert.Equal("srvtoolu_01Search", search.CallId);
        Assert.Equal(["paris weather"], search.Queries!);
        var found = Assert.Single(contents.OfType<WebSearchToolResultContent>());
        Assert.Equal("srvtoolu_01Search", found.CallId);
        var page = Assert.IsType<UriContent>(Assert.Single(found.Outputs!));
        Assert.Equal(("https://example.org/paris", "Paris weather"), (page.Uri.ToString(), page.AdditionalProperties?["title"]));
        var code = Assert.Single(contents.OfType<CodeInterpreterToolCallContent>());
        var command = Assert.IsType<DataContent>(Assert.Single(code.Inputs!));
        Assert.Equal(("srvtoolu_01Bash", "echo 21", "text/x-shellscript"), (code.CallId, System.Text.Encoding.UTF8.GetString(command.Data.Span), command.MediaType));
        var ran = Assert.Single(contents.OfType<CodeInterpreterToolResultContent>());
        Assert.Equal(("srvtoolu_01Bash", "21\n"), (ran.CallId, Assert.IsType<TextContent>(Assert.Single(ran.Outputs!)).Text));
        // Web fetch has no hosted-tool content: an informational function call and its result as Claude sent it.
        var fetch = Assert.Single(contents.OfType<FunctionCallContent>());
        Assert.Equal(("web_fetch", true), (fetch.Name, fetch.InformationalOnly));
        var fetched = Assert.Single(contents.OfType<FunctionResultContent>());
        Assert.Equal("url_not_accessible", Assert.IsType<JsonElement>(fetched.Result).GetProperty("error_code").GetString());
        // The citation annotates the text it supports.
        var citation = Assert.IsType<CitationAnnotation>(Assert.Single(contents.OfType<TextContent>().SelectMany(t => t.Annotations ?? [])));
        Assert.Equal(("https://example.org/paris", "Paris weather", "Sunny, 21 °C", "web_search"),
            (citation.Url?.ToString(), citation.Title, citation.Snippet, citation.ToolName));
    }

    [DatabaseFact]
    public async Task GetResponseAsync_AHostedToolTheAgentLacks_IsRefusedBeforeAnyRun_SayingHowToAddIt()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { ServerTools = [ServerTool.WebSearch()] });
        h.Claude.Respond(_ => FakeReply.Text("answered"));
        using var chat = h.Client.AsChatClient(agent.Id);

        var lacking = await Assert.ThrowsAsync<ArgumentException>(() => chat.GetResponseAsync([new ChatMessage(ChatRole.User, "run this")],
            new ChatOptions { Tools = [new HostedWebSearchTool(), new HostedCodeInterpreterTool()] }));
        Assert.Contains("HostedCodeInterpreterTool", lacking.Message, StringComparison.Ordinal);
        Assert.Contains("add ServerTool.CodeExecution() to its ServerTools", lacking.Message, StringComparison.Ordinal);
        var unknown = await Assert.ThrowsAsync<ArgumentException>(() => chat.GetResponseAsync([new ChatMessage(ChatRole.User, "run this")],
            new ChatOptions { Tools = [new HostedFileSearchTool()] }));
        Assert.Contains("HostedFileSearchTool, which Claude has no server tool for", unknown.Message, StringComparison.Ordinal);
        Assert.Equal(0, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE agent_id = $1", agent.Id));
        Assert.Empty(h.Claude.Requests);

        // The hosted tool the agent has, and AIFunctions (which the agent's workers cannot call), change nothing.
        var answer = await Eventually.WithinAsync(chat.GetResponseAsync([new ChatMessage(ChatRole.User, "hello")],
            new ChatOptions { Tools = [new HostedWebSearchTool(), AIFunctionFactory.Create(() => "x", "local_function")] }), "the answer");
        Assert.Equal("answered", answer.Text);
    }
}
