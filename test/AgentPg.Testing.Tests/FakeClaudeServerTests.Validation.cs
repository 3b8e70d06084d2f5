using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using Anthropic;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;

namespace AgentPg.Testing.Tests;

public sealed partial class FakeClaudeServerTests
{
    private const string WeatherTool = """{"name":"get_weather","description":"Weather","input_schema":{"type":"object","properties":{"location":{"type":"string"}},"required":["location"]}}""";
    private const string Hi = """[{"role":"user","content":"Hi"}]""";
    private const string ToolUseTurn = """{"role":"assistant","content":[{"type":"text","text":"Checking."},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location":"Paris"}}]}""";
    private const string ToolResult1 = """{"type":"tool_result","tool_use_id":"toolu_1","content":"18 C"}""";

    /// <summary>Each rule: a request the real API rejects (with the message it starts with) and the valid request next to it.</summary>
    public static TheoryData<string, string, string, string> ValidationRules() => new()
    {
        { "max_tokens zero", Body(Hi, maxTokens: 0), "max_tokens: Input should be greater than or equal to 1", Body(Hi, maxTokens: 1) },
        { "max_tokens negative", Body(Hi, maxTokens: -5), "max_tokens: Input should be greater than or equal to 1", Body(Hi, maxTokens: 5) },
        { "messages empty", Body("[]"), "messages: at least one message is required", Body(Hi) },
        { "first message from the assistant", Body("""[{"role":"assistant","content":"Hello"},{"role":"user","content":"Hi"}]"""), "messages: first message must use the \"user\" role", Body("""[{"role":"user","content":"Hello"},{"role":"assistant","content":"Hi"},{"role":"user","content":"Again"}]""") },
        { "unknown role (same-role turns are merged)", Body("""[{"role":"user","content":"a"},{"role":"tool","content":"b"}]"""), "messages.1.role: Input should be 'user' or 'assistant'", Body("""[{"role":"user","content":"a"},{"role":"user","content":"b"},{"role":"assistant","content":"c"},{"role":"assistant","content":"d"},{"role":"user","content":"e"}]""") },
        { "empty content", Body("""[{"role":"user","content":""}]"""), "messages.0: all messages must have non-empty content", Body("""[{"role":"user","content":"Hi"},{"role":"assistant","content":""}]""") },
        { "empty text block", Body("""[{"role":"user","content":[{"type":"text","text":""}]}]"""), "messages: text content blocks must be non-empty", Body("""[{"role":"user","content":[{"type":"text","text":"x"}]}]""") },
        { "whitespace-only text block", Body("""[{"role":"user","content":[{"type":"text","text":" \n\t"}]}]"""), "messages: text content blocks must contain non-whitespace text", Body("""[{"role":"user","content":[{"type":"text","text":" \n x"}]}]""") },
        { "whitespace-only string content", Body("""[{"role":"user","content":"\n\n"}]"""), "messages: text content blocks must contain non-whitespace text", Body("""[{"role":"user","content":"\n\nHi"}]""") },
        { "whitespace-only assistant text before a tool call", Body($$$"""[{"role":"user","content":"Weather?"},{"role":"assistant","content":[{"type":"text","text":"\n\n"},{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location":"Paris"}}]},{"role":"user","content":[{{{ToolResult1}}}]}]""", WeatherTool), "messages: text content blocks must contain non-whitespace text", Body($$$"""[{"role":"user","content":"Weather?"},{"role":"assistant","content":[{"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"location":"Paris"}}]},{"role":"user","content":[{{{ToolResult1}}}]}]""", WeatherTool) },
        { "final assistant text ending in whitespace", Body("""[{"role":"user","content":"Hi"},{"role":"assistant","content":[{"type":"text","text":"Hello, "}]}]"""), "messages: final assistant content cannot end with trailing whitespace", Body("""[{"role":"user","content":"Hi"},{"role":"assistant","content":[{"type":"text","text":"Hello ,"}]},{"role":"user","content":"and?"}]""") },
        { "tool_use id repeated in a later turn", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]}]""", WeatherTool), "messages.3.content.1: `tool_use` ids must be unique", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]},{{ToolUseTurn.Replace("toolu_1", "toolu_2", StringComparison.Ordinal)}},{"role":"user","content":[{{ToolResult1.Replace("toolu_1", "toolu_2", StringComparison.Ordinal)}}]}]""", WeatherTool) },
        { "tool_use id with a character outside the pattern", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn.Replace("toolu_1", "toolu:1", StringComparison.Ordinal)}},{"role":"user","content":[{{ToolResult1.Replace("toolu_1", "toolu:1", StringComparison.Ordinal)}}]}]""", WeatherTool), "messages.1.content.1.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]}]""", WeatherTool) },
        { "temperature above 1", Body(Hi, extra: """{"temperature":1.5}"""), "temperature: Input should be less than or equal to 1", Body(Hi, extra: """{"temperature":1}""") },
        { "top_p below 0", Body(Hi, extra: """{"top_p":-0.1}"""), "top_p: Input should be greater than or equal to 0", Body(Hi, extra: """{"top_p":0}""") },
        { "temperature and top_p for a model that takes one (Sonnet 4 takes both)", Body(Hi, extra: """{"temperature":0.3,"top_p":0.8}"""), "`temperature` and `top_p` cannot both be specified for this model. Please use only one.", Body(Hi, extra: """{"temperature":0.3,"top_p":0.8}""").Replace(Sdk.Model, "claude-sonnet-4-20250514", StringComparison.Ordinal) },
        { "unknown top-level field", Body(Hi, extra: """{"top-p":0.5}"""), "top-p: Extra inputs are not permitted", Body(Hi, extra: """{"top_p":0.5}""") },
        { "tool_use without tool_result", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":"Well?"}]""", WeatherTool), "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after: toolu_1", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]}]""", WeatherTool) },
        { "tool_use as the last message", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}}]""", WeatherTool), "messages.1: `tool_use` ids were found without `tool_result` blocks", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]},{"role":"assistant","content":"It is 18 C"}]""", WeatherTool) },
        { "tool_result after text", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{"type":"text","text":"here"},{{ToolResult1}}]}]""", WeatherTool), "messages.1: `tool_use` ids were found without `tool_result` blocks immediately after", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}},{"type":"text","text":"here"}]}]""", WeatherTool) },
        { "tool_result in a merged next user turn", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":"wait"},{"role":"user","content":[{{ToolResult1}}]}]""", WeatherTool), "messages.1: `tool_use` ids were found without `tool_result` blocks", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]},{"role":"user","content":"thanks"}]""", WeatherTool) },
        { "orphan tool_result", Body($$"""[{"role":"user","content":[{{ToolResult1}}]}]""", WeatherTool), "messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]}]""", WeatherTool) },
        { "tool_result for another turn's tool_use", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]},{"role":"assistant","content":"Done"},{"role":"user","content":[{{ToolResult1}}]}]""", WeatherTool), "messages.4.content.0: unexpected `tool_use_id`", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{{ToolResult1}}]},{"role":"assistant","content":"Done"},{"role":"user","content":"Thanks"}]""", WeatherTool) },
        { "tool name with a space", Body(Hi, """{"name":"get weather","input_schema":{"type":"object"}}"""), "tools.0.custom.name: String should match pattern '^[a-zA-Z0-9_-]{1,64}$'", Body(Hi, """{"name":"get_weather-2","input_schema":{"type":"object"}}""") },
        { "tool name longer than 64", Body(Hi, "{\"name\":\"" + new string('a', 65) + "\",\"input_schema\":{\"type\":\"object\"}}"), "tools.0.custom.name: String should match pattern", Body(Hi, "{\"name\":\"" + new string('a', 64) + "\",\"input_schema\":{\"type\":\"object\"}}") },
        { "duplicate tool names", Body(Hi, WeatherTool + "," + WeatherTool), "tools: Tool names must be unique.", Body(Hi, WeatherTool + "," + WeatherTool.Replace("get_weather", "get_weather2", StringComparison.Ordinal)) },
        { "input_schema not an object schema", Body(Hi, """{"name":"t","input_schema":{"type":"string"}}"""), "tools.0.custom.input_schema.type: Input should be 'object'", Body(Hi, """{"name":"t","input_schema":{"type":"object"}}""") },
        { "input_schema missing", Body(Hi, """{"name":"t"}"""), "tools.0.custom.input_schema: Field required", Body(Hi, """{"type":"web_search_20250305","name":"web_search"}""") },
        { "web search named other than web_search", Body(Hi, """{"type":"web_search_20250305","name":"search"}"""), "tools.0.web_search_20250305.name: Input should be 'web_search'", Body(Hi, """{"type":"web_search_20250305","name":"web_search","max_uses":1}""") },
        { "web search with a field Claude does not take", Body(Hi, """{"type":"web_search_20250305","name":"web_search","max_results":3}"""), "tools.0.web_search_20250305.max_results: Extra inputs are not permitted", Body(Hi, """{"type":"web_search_20250305","name":"web_search","user_location":{"type":"approximate","city":"Paris"}}""") },
        { "web search with both domain lists", Body(Hi, """{"type":"web_search_20250305","name":"web_search","allowed_domains":["a.com"],"blocked_domains":["b.com"]}"""), "tools.0.web_search_20250305: Cannot specify both allowed_domains and blocked_domains", Body(Hi, """{"type":"web_search_20250305","name":"web_search","allowed_domains":["a.com"]}""") },
        { "web fetch max_uses 0", Body(Hi, """{"type":"web_fetch_20250910","name":"web_fetch","max_uses":0}"""), "tools.0.web_fetch_20250910.max_uses: Input should be greater than 0", Body(Hi, """{"type":"web_fetch_20250910","name":"web_fetch","max_uses":1,"citations":{"enabled":true},"max_content_tokens":100}""") },
        { "code execution with an input_schema", Body(Hi, """{"type":"code_execution_20250825","name":"code_execution","input_schema":{"type":"object"}}"""), "tools.0.code_execution_20250825.input_schema: Extra inputs are not permitted", Body(Hi, """{"type":"code_execution_20250825","name":"code_execution"}""") },
        { "unknown server tool type", Body(Hi, """{"type":"web_search_20990101","name":"web_search"}"""), "tools.0: Input tag 'web_search_20990101' found using 'type' does not match any of the expected tags", Body(Hi, """{"type":"web_search_20260209","name":"web_search"}""") },
        { "deferred tool without a tool search tool", Body(Hi, WeatherTool.Replace("\"name\"", "\"defer_loading\":true,\"name\"", StringComparison.Ordinal) + """,{"type":"web_search_20250305","name":"web_search"}"""), "tools: defer_loading is set on tool 'get_weather' but no tool search tool", Body(Hi, WeatherTool.Replace("\"name\"", "\"defer_loading\":true,\"name\"", StringComparison.Ordinal) + """,{"type":"tool_search_tool_bm25_20251119","name":"tool_search_tool_bm25"}""") },
        { "deferred tool search tool", Body(Hi, WeatherTool + """,{"type":"tool_search_tool_regex_20251119","name":"tool_search_tool_regex","defer_loading":true}"""), "tools: The tool search tool 'tool_search_tool_regex' cannot have defer_loading set to true.", Body(Hi, WeatherTool + """,{"type":"tool_search_tool_regex_20251119","name":"tool_search_tool_regex","defer_loading":false}""") },
        { "deferred tool with cache_control", Body(Hi, """{"name":"t","input_schema":{"type":"object"},"defer_loading":true,"cache_control":{"type":"ephemeral"}},{"type":"tool_search_tool_regex_20251119","name":"tool_search_tool_regex"}"""), "tools: Tool 't' has defer_loading set to true and cannot have cache_control.", Body(Hi, """{"name":"t","input_schema":{"type":"object"},"defer_loading":true},{"type":"tool_search_tool_regex_20251119","name":"tool_search_tool_regex","cache_control":{"type":"ephemeral"}}""") },
        { "tool_reference without a tool_name", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"tool_reference"}]}]}]""", WeatherTool), "messages.2.content.0.tool_result.content.0.tool_reference.tool_name: Field required", Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"tool_reference","tool_name":"get_weather"}]}]}]""", WeatherTool) },
        { "cited text sent back without its encrypted_index", Body("""[{"role":"user","content":"Who?"},{"role":"assistant","content":[{"type":"text","text":"Shannon.","citations":[{"type":"web_search_result_location","url":"https://e.org","title":"E","cited_text":"Shannon"}]}]},{"role":"user","content":"More?"}]"""), "messages.1.content.0.text.citations.0.web_search_result_location.encrypted_index: Field required", Body("""[{"role":"user","content":"Who?"},{"role":"assistant","content":[{"type":"text","text":"Shannon.","citations":[{"type":"web_search_result_location","url":"https://e.org","title":"E","cited_text":"Shannon","encrypted_index":"RW5j"}]}]},{"role":"user","content":"More?"}]""") },
        { "citation of an unknown type", Body("""[{"role":"user","content":"Who?"},{"role":"assistant","content":[{"type":"text","text":"Shannon.","citations":[{"type":"footnote","cited_text":"Shannon"}]}]},{"role":"user","content":"More?"}]"""), "messages.1.content.0.text.citations.0: Input tag 'footnote' found using 'type' does not match any of the expected tags", Body("""[{"role":"user","content":"Who?"},{"role":"assistant","content":[{"type":"text","text":"Shannon.","citations":null}]},{"role":"user","content":"More?"}]""") },
        { "memory tool named other than memory", Body(Hi, """{"type":"memory_20250818","name":"notes"}"""), "tools.0.memory_20250818.name: Input should be 'memory'", Body(Hi, """{"type":"memory_20250818","name":"memory"}""") },
        { "memory tool with an input_schema", Body(Hi, """{"type":"memory_20250818","name":"memory","input_schema":{"type":"object"}}"""), "tools.0.memory_20250818.input_schema: Extra inputs are not permitted", Body(Hi, """{"type":"memory_20250818","name":"memory","cache_control":{"type":"ephemeral"}}""") },
        { "memory tool and a custom tool both named memory", Body(Hi, """{"type":"memory_20250818","name":"memory"},{"name":"memory","input_schema":{"type":"object"}}"""), "tools: Tool names must be unique.", Body(Hi, """{"type":"memory_20250818","name":"memory"},{"name":"memory2","input_schema":{"type":"object"}}""") },
        { "tool_choice names an unknown tool", Body(Hi, WeatherTool, """{"tool_choice":{"type":"tool","name":"get_time"}}"""), "tool_choice.tool.name: Tool 'get_time' not found", Body(Hi, WeatherTool, """{"tool_choice":{"type":"tool","name":"get_weather"}}""") },
        { "thinking budget not below max_tokens", Body(Hi, maxTokens: 2048, extra: """{"thinking":{"type":"enabled","budget_tokens":2048}}"""), "`max_tokens` must be greater than `thinking.budget_tokens`", Body(Hi, maxTokens: 2049, extra: """{"thinking":{"type":"enabled","budget_tokens":2048}}""") },
        { "thinking budget below 1024", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"enabled","budget_tokens":1023}}"""), "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"enabled","budget_tokens":1024}}""") },
        { "temperature other than 1 with thinking", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"adaptive"},"temperature":0.5}"""), "`temperature` may only be set to 1 when thinking is enabled.", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"adaptive"},"temperature":1}""") },
        { "top_k with thinking", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"enabled","budget_tokens":1024},"top_k":40}"""), "`top_k` is not supported when thinking is enabled.", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"disabled"},"top_k":40}""") },
        { "top_p below 0.95 with thinking", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"adaptive"},"top_p":0.9}"""), "`top_p` must be greater than or equal to 0.95 or unset when thinking is enabled.", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"adaptive"},"top_p":0.95}""") },
        { "forced tool use with thinking", Body(Hi, WeatherTool, """{"thinking":{"type":"adaptive"},"tool_choice":{"type":"any"}}"""), "Thinking may not be enabled when `tool_choice` forces tool use.", Body(Hi, WeatherTool, """{"thinking":{"type":"adaptive"},"tool_choice":{"type":"auto"}}""") },
        { "unknown thinking display", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"adaptive","display":"full"}}"""), "thinking.adaptive.display: Input should be 'summarized' or 'omitted'", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"adaptive","display":"omitted"}}""") },
        { "display on disabled thinking", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"disabled","display":"omitted"}}"""), "thinking.disabled.display: Extra inputs are not permitted", Body(Hi, maxTokens: 4096, extra: """{"thinking":{"type":"enabled","budget_tokens":1024,"display":"summarized"}}""") },
        { "unknown effort", Body(Hi, extra: """{"output_config":{"effort":"extreme"}}"""), "output_config.effort: Input should be 'low', 'medium', 'high', 'xhigh' or 'max'", Body(Hi, extra: """{"output_config":{"effort":"xhigh"}}""") },
        { "output_config not an object", Body(Hi, extra: """{"output_config":"high"}"""), "output_config: Input should be a valid dictionary", Body(Hi, extra: """{"output_config":{"effort":"max"}}""") },
        { "five cache_control breakpoints", Body(CacheBlocks(5)), "A maximum of 4 blocks with cache_control may be provided. Found 5.", Body(CacheBlocks(4)) },
        { "tool_result image of a media type Claude refuses", ToolResultBody(Image("image/svg+xml", Png)), "messages.2.content.0.tool_result.content.1.image.source.base64.media_type: Input should be 'image/jpeg', 'image/png', 'image/gif' or 'image/webp'", ToolResultBody(Image("image/png", Png)) },
        { "tool_result image whose bytes are another type", ToolResultBody(Image("image/jpeg", Png)), "messages.2.content.0.tool_result.content.1.image.source.base64.data: Image does not match the provided media type image/jpeg", ToolResultBody(Image("image/gif", "R0lGODlh")) },
        { "tool_result image with invalid base64", ToolResultBody(Image("image/png", "not base64!")), "messages.2.content.0.tool_result.content.1.image.source.base64.data: Field required and must be valid base64 data", ToolResultBody(Image("image/png", Png)) },
        { "tool_result block of a type Claude refuses", ToolResultBody("""{"type":"audio","data":"AAAA"}"""), "messages.2.content.0.tool_result.content.1: Input tag 'audio' found using 'type' does not match any of the expected tags: 'text', 'image', 'search_result', 'document'", ToolResultBody("""{"type":"document","source":{"type":"text","media_type":"text/plain","data":"notes"}}""") },
        { "tool_result document that is not a PDF", ToolResultBody("""{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"aGVsbG8="}}"""), "messages.2.content.0.tool_result.content.1.document.source.base64.data: The PDF specified was not valid.", ToolResultBody("""{"type":"document","source":{"type":"base64","media_type":"application/pdf","data":"JVBERi0xLjQ="}}""") },
        { "tool_result content neither string nor list", Body($$$"""[{"role":"user","content":"Weather?"},{{{ToolUseTurn}}},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":{"text":"x"}}]}]""", WeatherTool), "messages.2.content.0.tool_result.content: Input should be a valid string or a valid list", ToolResultBody("""{"type":"text","text":"more"}""") },
        { "user image whose bytes are another type", Body($$"""[{"role":"user","content":[{{Image("image/webp", Png)}},{"type":"text","text":"what is it?"}]}]"""), "messages.0.content.0.image.source.base64.data: Image does not match the provided media type image/webp", Body($$"""[{"role":"user","content":[{{Image("image/png", Png)}},{"type":"text","text":"what is it?"}]}]""") },
    };

    /// <summary>The PNG signature, base64.</summary>
    private const string Png = "iVBORw0KGgo=";

    private static string Image(string mediaType, string data) => $$$"""{"type":"image","source":{"type":"base64","media_type":"{{{mediaType}}}","data":"{{{data}}}"}}""";

    /// <summary>A conversation whose tool_result content is a text block followed by <paramref name="block"/>.</summary>
    private static string ToolResultBody(string block)
        => Body($$"""[{"role":"user","content":"Weather?"},{{ToolUseTurn}},{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"18 C"},{{block}}]}]}]""", WeatherTool);

    [Fact]
    public async Task Create_ToolResultWithContentBlocks_IsRecordedWithItsBlocks()
    {
        FakeToolResult? received = null;
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
        {
            Responder = request =>
            {
                received = request.ToolResults.SingleOrDefault();
                return FakeReply.Text("ok");
            },
        });
        using var client = claude.CreateClient(o => o with { MaxRetries = 0 });

        await client.Messages.Create(Sdk.Raw(ToolResultBody(Image("image/png", Png))));

        Assert.NotNull(received);
        Assert.Equal("18 C", received.Content);
        Assert.Equal(["text", "image"], received.Blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal(Png, received.Blocks[1].GetProperty("source").GetProperty("data").GetString());
    }

    [Theory]
    [MemberData(nameof(ValidationRules))]
    public async Task Create_ValidationRule_RejectsInvalidAndAcceptsValid(string rule, string invalidBody, string expectedMessage, string validBody)
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("ok") });
        using var client = claude.CreateClient(o => o with { MaxRetries = 0 });

        var error = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(Sdk.Raw(invalidBody)));
        var accepted = await client.Messages.Create(Sdk.Raw(validBody));

        Assert.True(error.ApiMessage?.StartsWith(expectedMessage, StringComparison.Ordinal), $"{rule}: unexpected message '{error.ApiMessage}'");
        Assert.Equal("invalid_request_error", error.Type!.Raw());
        Assert.Equal("ok", Sdk.Text(accepted));
    }

    [Theory]
    [InlineData("""{"max_tokens":1024,"messages":[{"role":"user","content":"Hi"}]}""", "model: Field required")]
    [InlineData("""{"model":"claude-sonnet-4-5","messages":[{"role":"user","content":"Hi"}]}""", "max_tokens: Field required")]
    [InlineData("""{"model":"claude-sonnet-4-5","max_tokens":"many","messages":[{"role":"user","content":"Hi"}]}""", "max_tokens: Input should be a valid integer")]
    [InlineData("""{"model":"claude-sonnet-4-5","max_tokens":10}""", "messages: Field required")]
    [InlineData("""{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[{"role":"user","content":"Hi"}]""", "There was an error parsing the body")]
    public async Task Create_MissingRequiredFieldFromAnotherClient_Returns400(string body, string expectedMessage)
    {
        // The SDK itself refuses to send a request without model or max_tokens, so these go over raw HTTP.
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("ok") });
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, claude.BaseUrl + "/v1/messages") { Content = new StringContent(body, Encoding.UTF8, "application/json") };
        request.Headers.Add("x-api-key", "k");

        using var response = await http.SendAsync(request);
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("invalid_request_error", error.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.StartsWith(expectedMessage, error.RootElement.GetProperty("error").GetProperty("message").GetString());
    }

    [Fact]
    public async Task CreateStreaming_InvalidRequest_ThrowsBadRequestBeforeTheStreamAndConsumesNoReply()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("kept"));

        var error = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => Sdk.CollectAsync(client.Messages.CreateStreaming(Sdk.Raw(Body("[]")))));

        Assert.StartsWith("messages: at least one message is required", error.ApiMessage);
        Assert.Equal(1, claude.PendingReplyCount);
        Assert.Equal("kept", Sdk.Text(await client.Messages.Create(Sdk.Ask("Hi"))));
    }

    [Fact]
    public async Task Create_ModelNotInAllowList_ThrowsNotFound()
    {
        var options = new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("ok") };
        options.AllowedModels.Add(Sdk.Model);
        await using var claude = await FakeClaudeServer.StartAsync(options);
        using var client = claude.CreateClient();

        var error = await Assert.ThrowsAsync<AnthropicNotFoundException>(() => client.Messages.Create(Sdk.Ask("Hi") with { Model = "claude-nope" }));
        var accepted = await client.Messages.Create(Sdk.Ask("Hi"));

        Assert.Equal("model: claude-nope", error.ApiMessage);
        Assert.Equal("not_found_error", error.Type!.Raw());
        Assert.Equal("ok", Sdk.Text(accepted));
    }

    [Fact]
    public async Task Create_AnyModelByDefault_IsAccepted()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("ok") });
        using var client = claude.CreateClient();

        var message = await client.Messages.Create(Sdk.Ask("Hi") with { Model = "claude-future-9" });

        Assert.Equal("claude-future-9", message.Model.Raw());
    }

    [Fact]
    public async Task Create_PromptOverContextWindow_ThrowsPromptTooLong()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { ContextWindow = 100, Responder = _ => FakeReply.Text("ok") });
        using var client = claude.CreateClient();

        var error = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(Sdk.Ask(new string('x', 404))));
        var streamError = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.CreateStreaming(Sdk.Ask(new string('x', 404))).Aggregate());
        var fits = await client.Messages.Create(Sdk.Ask(new string('x', 400)));

        Assert.Equal("prompt is too long: 101 tokens > 100 maximum", error.ApiMessage);
        Assert.Equal("prompt is too long: 101 tokens > 100 maximum", streamError.ApiMessage);
        Assert.Equal(100, fits.Usage.InputTokens);
    }

    [Fact]
    public async Task Create_Context1MBetaHeader_RaisesTheEnforcedWindow()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { ContextWindow = 100, ExtendedContextWindow = 1_000, Responder = _ => FakeReply.Text("ok") });
        using var client = claude.CreateClient();
        var prompt = new string('x', 2_000); // 500 tokens

        await Assert.ThrowsAsync<AnthropicBadRequestException>(() => client.Messages.Create(Sdk.Ask(prompt)));
        var viaBetaNamespace = await client.Beta.Messages.Create(new Anthropic.Models.Beta.Messages.MessageCreateParams
        {
            Model = Sdk.Model,
            MaxTokens = 1024,
            Messages = [new Anthropic.Models.Beta.Messages.BetaUserMessageParam(prompt)],
            Betas = [Anthropic.Models.Beta.AnthropicBeta.Context1m2025_08_07],
        });
        var with1M = client.WithOptions(o => o with { ExtraHeaders = new Dictionary<string, string> { ["anthropic-beta"] = "interleaved-thinking-2025-05-14, context-1m-2025-08-07" } });
        var viaHeader = await with1M.Messages.Create(Sdk.Ask(prompt));
        var tooLongEvenFor1M = await Assert.ThrowsAsync<AnthropicBadRequestException>(() => with1M.Messages.Create(Sdk.Ask(new string('x', 4_004))));

        Assert.Equal(500, viaBetaNamespace.Usage.InputTokens);
        Assert.Equal(500, viaHeader.Usage.InputTokens);
        Assert.Equal("prompt is too long: 1001 tokens > 1000 maximum", tooLongEvenFor1M.ApiMessage);
        Assert.Equal(["context-1m-2025-08-07"], claude.Requests[1].Betas);
    }

    [Fact]
    public async Task Create_ModelWithOwnContextWindow_UsesIt()
    {
        var options = new FakeClaudeServerOptions { ContextWindow = 100, Responder = _ => FakeReply.Text("ok") };
        options.ModelContextWindows["claude-big"] = 1_000;
        await using var claude = await FakeClaudeServer.StartAsync(options);
        using var client = claude.CreateClient();

        var message = await client.Messages.Create(Sdk.Ask(new string('x', 2_000)) with { Model = "claude-big" });

        Assert.Equal(500, message.Usage.InputTokens);
    }

    [Fact]
    public async Task Create_WithoutApiKey_ThrowsUnauthorized()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = _ => FakeReply.Text("ok") });
        using var http = new HttpClient();

        using var response = await http.PostAsync(claude.BaseUrl + "/v1/messages", new StringContent(Body(Hi), Encoding.UTF8, "application/json"));
        using var error = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("error", error.RootElement.GetProperty("type").GetString());
        Assert.Equal("authentication_error", error.RootElement.GetProperty("error").GetProperty("type").GetString());
        Assert.Equal(response.Headers.GetValues("request-id").Single(), error.RootElement.GetProperty("request_id").GetString());
    }

    [Fact]
    public async Task Create_WrongKeyWhenAKeyIsRequired_ThrowsUnauthorizedAndTheRightKeyWorks()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { ApiKey = "sk-ant-right", Responder = _ => FakeReply.Text("ok") });
        using var wrong = claude.CreateClient(o => o with { ApiKey = "sk-ant-wrong" });
        using var right = claude.CreateClient();

        var error = await Assert.ThrowsAsync<AnthropicUnauthorizedException>(() => wrong.Messages.Create(Sdk.Ask("Hi")));
        var message = await right.Messages.Create(Sdk.Ask("Hi"));

        Assert.Equal("authentication_error", error.Type!.Raw());
        Assert.Equal("invalid x-api-key", error.ApiMessage);
        Assert.Equal("ok", Sdk.Text(message));
        Assert.Equal("Bearer sk-ant-right", claude.Requests[1].Headers["Authorization"]);
    }

    [Fact]
    public async Task Create_XApiKeyHeaderAndBetaQuery_AreAccepted()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { ApiKey = "sk-ant-right", Responder = _ => FakeReply.Text("ok") });
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, claude.BaseUrl + "/v1/messages?beta=true") { Content = new StringContent(Body(Hi), Encoding.UTF8, "application/json") };
        request.Headers.Add("x-api-key", "sk-ant-right");
        request.Headers.Add("anthropic-version", "2023-06-01");
        request.Headers.Add("anthropic-beta", " prompt-caching-2024-07-31 ,  context-1m-2025-08-07");

        using var response = await http.SendAsync(request);
        using var message = JsonDocument.Parse(await response.Content.ReadAsStringAsync());

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("ok", message.RootElement.GetProperty("content")[0].GetProperty("text").GetString());
        Assert.StartsWith("req_", response.Headers.GetValues("request-id").Single());
        Assert.Equal(new MediaTypeHeaderValue("application/json"), response.Content.Headers.ContentType);
        var recorded = Assert.Single(claude.Requests);
        Assert.Equal(["prompt-caching-2024-07-31", "context-1m-2025-08-07"], recorded.Betas);
        Assert.Equal("true", recorded.Query["beta"]);
        Assert.Equal("/v1/messages", recorded.Path);
    }

    [Fact]
    public async Task Dispatch_UnknownRoute_ReturnsNotFoundError()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var http = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, claude.BaseUrl + "/v1/nothing-here");
        request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", "k");

        using var response = await http.SendAsync(request);

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Contains("not_found_error", await response.Content.ReadAsStringAsync());
    }

    private static string Body(string messages, string? tools = null, string? extra = null, int maxTokens = 1024) =>
        "{\"model\":\"" + Sdk.Model + "\",\"max_tokens\":" + maxTokens + ",\"messages\":" + messages
        + (tools is null ? "" : ",\"tools\":[" + tools + "]")
        + (extra is null ? "" : "," + extra[1..^1])
        + "}";

    private static string CacheBlocks(int count) =>
        "[{\"role\":\"user\",\"content\":[" + string.Join(",", Enumerable.Range(0, count).Select(i => "{\"type\":\"text\",\"text\":\"block " + i + "\",\"cache_control\":{\"type\":\"ephemeral\"}}")) + "]}]";
}
