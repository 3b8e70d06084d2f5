using System.Net;
using System.Text;
using System.Text.Json;

namespace AgentPg.Testing.Tests;

public sealed partial class FakeClaudeServerTests
{
    private const string ContextManagementBeta = "context-management-2025-06-27";

    [Theory]
    [InlineData("""{"edits":[{"type":"clear_tool_uses_20250919","trigger":{"type":"input_tokens","value":30000},"keep":{"type":"tool_uses","value":3},"exclude_tools":["web_search"]}]}""", true, null)]
    [InlineData("""{"edits":[{"type":"clear_thinking_20251015"}]}""", true, null)]
    [InlineData("""{"edits":[{"type":"clear_tool_uses_20250919"}]}""", false, "context_management: Extra inputs are not permitted")]
    [InlineData("""{"edits":[{"type":"clear_everything"}]}""", true, "context_management.edits.0: Input tag 'clear_everything' found using 'type'")]
    [InlineData("""{"edits":"all"}""", true, "context_management.edits: Input should be a valid list")]
    [InlineData("\"clear\"", true, "context_management: Input should be a valid dictionary")]
    [InlineData("""{"edits":[{"type":"clear_tool_uses_20250919","trigger":30000}]}""", true, "context_management.edits.0.trigger: Input should be an object")]
    [InlineData("""{"edits":[{"type":"clear_tool_uses_20250919","exclude_tools":[1]}]}""", true, "context_management.edits.0.exclude_tools: Input should be a valid list of strings")]
    public async Task ContextManagement_AcceptedWithItsBeta_MalformedValuesRejected(string management, bool withBeta, string? expectedError)
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("ok") });
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, claude.BaseUrl + "/v1/messages")
        {
            Content = new StringContent(
                $$"""{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"Hi"}],"context_management":{{management}}}""",
                Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("x-api-key", "k");
        if (withBeta)
        {
            request.Headers.Add("anthropic-beta", ContextManagementBeta);
        }

        using var response = await http.SendAsync(request);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        if (expectedError is null)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Contains(ContextManagementBeta, claude.Requests.Single().Betas);
        }
        else
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.StartsWith(expectedError, body.RootElement.GetProperty("error").GetProperty("message").GetString());
        }
    }
}
