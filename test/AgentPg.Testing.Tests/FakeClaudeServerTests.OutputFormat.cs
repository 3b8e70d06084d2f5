using System.Net;
using System.Text;
using System.Text.Json;

namespace AgentPg.Testing.Tests;

public sealed partial class FakeClaudeServerTests
{
    [Theory]
    [InlineData("""{"format":{"type":"json_schema","schema":{"type":"object","properties":{},"additionalProperties":false}}}""", null)]
    [InlineData("""{"effort":"high"}""", null)]
    [InlineData("""{"format":null}""", null)]
    [InlineData("""{"format":{"type":"json","schema":{}}}""", "output_config.format: Input tag 'json' found using 'type'")]
    [InlineData("""{"format":{"type":"json_schema"}}""", "output_config.format.schema: Field required")]
    [InlineData("""{"format":{"type":"json_schema","schema":"object"}}""", "output_config.format.schema: Field required")]
    [InlineData("\"json\"", "output_config: Input should be a valid dictionary")]
    public async Task OutputFormat_AJsonSchemaIsAccepted_MalformedFormatsRejected(string outputConfig, string? expectedError)
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("{}") });
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, claude.BaseUrl + "/v1/messages")
        {
            Content = new StringContent(
                $$"""{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"Hi"}],"output_config":{{outputConfig}}}""",
                Encoding.UTF8, "application/json"),
        };
        request.Headers.Add("x-api-key", "k");

        using var response = await http.SendAsync(request);
        using var body = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        if (expectedError is null)
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }
        else
        {
            Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
            Assert.StartsWith(expectedError, body.RootElement.GetProperty("error").GetProperty("message").GetString());
        }
    }
}
