using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Messages;

/// <summary>Blocks of Claude's server tools (web search) are stored and sent back to Claude exactly as they came.</summary>
public sealed class ServerToolBlockTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string ServerToolUse = """
        {"type":"server_tool_use","id":"srvtoolu_01WYG3ziw53XMcoyKL4XcZmE","name":"web_search","input":{"query":"weather in Paris today"}}
        """;

    private const string WebSearchToolResult = """
        {"type":"web_search_tool_result","tool_use_id":"srvtoolu_01WYG3ziw53XMcoyKL4XcZmE","content":[
          {"type":"web_search_result","url":"https://example.org/paris","title":"Paris weather","encrypted_content":"EqgfCioIARgBIiQ3YTAwMjY1Mi1mZjM5LTQ1NGUtODgxNC1kNjNjNTk1ZWI3Y","page_age":"November 28, 2026"},
          {"type":"web_search_result","url":"https://example.org/france","title":"France forecast","encrypted_content":"Eo8BCioIAhgBIiRlNWU5YjFkNi0zNjA5LTQ2ODktYmE3Ny02ZjY","page_age":null}]}
        """;

    [DatabaseTheory]
    [InlineData(RunMode.Streaming)]
    [InlineData(RunMode.Batch)]
    public async Task ServerToolBlocks_AreSentBackLosslesslyOnTheNextRequest(RunMode mode)
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var serverToolUse = JsonDocument.Parse(ServerToolUse).RootElement;
        var searchResult = JsonDocument.Parse(WebSearchToolResult).RootElement;
        h.Claude.Respond(request => request.LastUserText == "weather?"
            ? FakeReply.Message(FakeContentBlock.Raw(serverToolUse), FakeContentBlock.Raw(searchResult), FakeContentBlock.Text("Sunny in Paris."))
            : FakeReply.Text("you asked before"));
        var session = await h.Client.NewSessionAsync();

        Task<Response> Run(string prompt) => mode == RunMode.Batch
            ? h.Client.RunSyncAsync(session, agent.Id, prompt)
            : h.Client.RunFastSyncAsync(session, agent.Id, prompt);

        Assert.Equal("Sunny in Paris.", (await Eventually.WithinAsync(Run("weather?"), "the first run", TimeSpan.FromSeconds(60))).Text);
        var stored = (await h.Client.GetMessagesAsync(session)).Single(m => m.Role == MessageRole.Assistant);
        Assert.Equal(["server_tool_use", "web_search_tool_result", "text"], stored.Content.Select(b => b.Type));
        Assert.Equal("srvtoolu_01WYG3ziw53XMcoyKL4XcZmE", stored.Content[0].ToolUseId);

        Assert.Equal("you asked before", (await Eventually.WithinAsync(Run("and again?"), "the second run", TimeSpan.FromSeconds(60))).Text);

        var second = h.Claude.Requests.Where(r => r.IsMessagesCall || (r.Method == "POST" && r.Path == "/v1/messages/batches")).Last().Body!.Value;
        var messages = mode == RunMode.Batch ? second.GetProperty("requests")[0].GetProperty("params").GetProperty("messages") : second.GetProperty("messages");
        Assert.Equal(3, messages.GetArrayLength());
        var assistant = messages[1];
        Assert.Equal("assistant", assistant.GetProperty("role").GetString());
        var content = assistant.GetProperty("content");
        Assert.Equal(3, content.GetArrayLength());
        AssertSameJson(serverToolUse, content[0]);
        AssertSameJson(searchResult, content[1]);
        Assert.Equal("Sunny in Paris.", content[2].GetProperty("text").GetString());
    }

    private static void AssertSameJson(JsonElement expected, JsonElement actual)
        => Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected.GetRawText()), JsonNode.Parse(actual.GetRawText())),
            $"expected {expected.GetRawText()}\nbut Claude was sent {actual.GetRawText()}");
}
