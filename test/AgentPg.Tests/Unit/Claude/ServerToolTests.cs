using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Claude;

namespace AgentPg.Tests.Unit.Claude;

/// <summary>The definitions <see cref="ServerTool"/>'s factories make (Anthropic SDK 13.12's field names), the mistakes they
/// refuse, and how server tools change a request's betas and prompt-cache breakpoints.</summary>
public sealed class ServerToolTests
{
    [Fact]
    public void Factories_MakeClaudesDefinitions()
    {
        Assert.Equal("""{"type":"web_search_20250305","name":"web_search"}""", ServerTool.WebSearch().ToString());
        Assert.Equal(
            """{"type":"web_search_20250305","name":"web_search","max_uses":5,"allowed_domains":["example.org","docs.example.com/api"],"user_location":""" +
            """{"type":"approximate","city":"Paris","country":"FR","timezone":"Europe/Paris"}}""",
            ServerTool.WebSearch(maxUses: 5, allowedDomains: ["example.org", "docs.example.com/api"],
                userLocation: new WebSearchUserLocation { City = "Paris", Country = "FR", Timezone = "Europe/Paris" }).ToString());
        Assert.Equal(
            """{"type":"web_fetch_20250910","name":"web_fetch","max_uses":2,"blocked_domains":["ads.example.com"],"citations":{"enabled":true},"max_content_tokens":5000}""",
            ServerTool.WebFetch(maxUses: 2, blockedDomains: ["ads.example.com"], citations: true, maxContentTokens: 5000).ToString());
        Assert.Equal("""{"type":"code_execution_20250825","name":"code_execution"}""", ServerTool.CodeExecution().ToString());
        var regex = ServerTool.ToolSearch(ToolSearchKind.Regex);
        Assert.Equal("""{"type":"tool_search_tool_regex_20251119","name":"tool_search_tool_regex"}""", regex.ToString());
        Assert.True(regex.IsToolSearch);
        Assert.Empty(regex.AlwaysLoadedTools);
        var bm25 = ServerTool.ToolSearch(ToolSearchKind.Bm25, ["lookup"]);
        Assert.Equal("""{"type":"tool_search_tool_bm25_20251119","name":"tool_search_tool_bm25"}""", bm25.ToString());
        Assert.Equal(["lookup"], bm25.AlwaysLoadedTools);
        Assert.False(ServerTool.WebSearch().IsToolSearch);
        Assert.Null(ServerTool.CodeExecution().Beta);
    }

    [Fact]
    public void FromJson_KeepsTheDefinitionAsGiven_AndComparesByValue()
    {
        using var document = JsonDocument.Parse("""{ "type": "web_search_20260209", "name": "web_search", "max_uses": 2, "allowed_callers": ["direct"] }""");

        var tool = ServerTool.FromJson(document.RootElement, beta: "some-beta-2026-02-09");

        Assert.Equal("""{"type":"web_search_20260209","name":"web_search","max_uses":2,"allowed_callers":["direct"]}""", tool.Definition.GetRawText());
        Assert.Equal(("web_search_20260209", "web_search", "some-beta-2026-02-09"), (tool.Type, tool.Name, tool.Beta));
        Assert.Equal(tool, ServerTool.FromJson(JsonDocument.Parse(tool.Definition.GetRawText()).RootElement, "some-beta-2026-02-09"));
        Assert.NotEqual(tool, ServerTool.FromJson(document.RootElement));
        Assert.Equal(ServerTool.ToolSearch(ToolSearchKind.Bm25, ["a"]), ServerTool.ToolSearch(ToolSearchKind.Bm25, ["a"]));
        Assert.NotEqual(ServerTool.ToolSearch(ToolSearchKind.Bm25, ["a"]), ServerTool.ToolSearch(ToolSearchKind.Bm25));
        Assert.True(ServerTool.FromJson(JsonDocument.Parse("""{"type":"tool_search_tool_regex","name":"tool_search_tool_regex"}""").RootElement).IsToolSearch);
    }

    [Fact]
    public void StoredForm_RoundTrips()
    {
        IReadOnlyList<ServerTool> tools =
        [
            ServerTool.WebSearch(maxUses: 1),
            ServerTool.ToolSearch(ToolSearchKind.Regex, ["lookup", "agent_x"]),
            ServerTool.FromJson(JsonDocument.Parse("""{"type":"code_execution_20250825","name":"code_execution"}""").RootElement, "code-execution-2025-08-25"),
        ];

        Assert.Equal(tools, ServerTool.FromStoredJson(ServerTool.ToJson(tools)!));
        Assert.Null(ServerTool.ToJson(null));
    }

    public static TheoryData<string, Func<ServerTool>, string> FactoryMistakes => new()
    {
        { "both domain lists", () => ServerTool.WebSearch(allowedDomains: ["a.com"], blockedDomains: ["b.com"]), "allowedDomains or blockedDomains, not both" },
        { "fetch: both domain lists", () => ServerTool.WebFetch(allowedDomains: ["a.com"], blockedDomains: ["b.com"]), "not both" },
        { "max uses 0", () => ServerTool.WebSearch(maxUses: 0), "maxUses" },
        { "max content tokens 0", () => ServerTool.WebFetch(maxContentTokens: 0), "maxContentTokens" },
        { "domain with a scheme", () => ServerTool.WebSearch(allowedDomains: ["https://example.org"]), "without a scheme" },
        { "empty domain", () => ServerTool.WebFetch(blockedDomains: [""]), "is not a domain" },
        { "empty location", () => ServerTool.WebSearch(userLocation: new WebSearchUserLocation()), "has no field set" },
        { "three-letter country", () => ServerTool.WebSearch(userLocation: new WebSearchUserLocation { Country = "FRA" }), "two-letter ISO 3166-1" },
        { "bad always-loaded name", () => ServerTool.ToolSearch(ToolSearchKind.Bm25, ["no spaces allowed"]), "not a valid tool name" },
        { "always-loaded twice", () => ServerTool.ToolSearch(ToolSearchKind.Bm25, ["a", "a"]), "more than once" },
        { "not a kind", () => ServerTool.ToolSearch((ToolSearchKind)7), "Not a ToolSearchKind" },
        { "json: not an object", () => FromJson("[1]"), "must be a JSON object" },
        { "json: no type", () => FromJson("""{"name":"web_search"}"""), "no string \"type\"" },
        { "json: custom", () => FromJson("""{"type":"custom","name":"x"}"""), "register an ITool" },
        { "json: bad name", () => FromJson("""{"type":"web_search_20260209","name":"web search"}"""), "tool-name rule" },
        { "json: cache_control", () => FromJson("""{"type":"web_search_20260209","name":"web_search","cache_control":{"type":"ephemeral"}}"""), "cache_control" },
        { "json: both domain lists", () => FromJson("""{"type":"web_fetch_20260209","name":"web_fetch","allowed_domains":["a"],"blocked_domains":["b"]}"""), "Keep one" },
        { "json: max_uses 0", () => FromJson("""{"type":"web_search_20260209","name":"web_search","max_uses":0}"""), "at least 1" },
        { "json: two betas", () => ServerTool.FromJson(JsonDocument.Parse("""{"type":"x_1","name":"x"}""").RootElement, "a-1,b-2"), "one anthropic-beta value" },
    };

    [Theory]
    [MemberData(nameof(FactoryMistakes))]
    public void Factories_RefuseMistakes_SayingWhatToFix(string mistake, Func<ServerTool> make, string message)
    {
        var ex = Assert.ThrowsAny<ArgumentException>(make);
        Assert.True(ex.Message.Contains(message, StringComparison.Ordinal), $"{mistake}: {ex.Message}");
    }

    [Fact]
    public void BetaHeaders_AddTheServerToolsBetas_EachOnce()
    {
        var needsBeta = ServerTool.FromJson(JsonDocument.Parse("""{"type":"code_execution_20250825","name":"code_execution"}""").RootElement, "code-execution-2025-08-25");
        var again = ServerTool.FromJson(JsonDocument.Parse("""{"type":"x_20250825","name":"x"}""").RootElement, "code-execution-2025-08-25");

        Assert.Empty(RequestBuilder.BetaHeaders(false, false, [ServerTool.WebSearch()]));
        Assert.Equal("code-execution-2025-08-25", RequestBuilder.BetaHeaders(false, false, [needsBeta, again])["anthropic-beta"].GetString());
        Assert.Equal(RequestBuilder.ExtendedContextBeta + "," + RequestBuilder.ContextManagementBeta + ",code-execution-2025-08-25",
            RequestBuilder.BetaHeaders(true, true, [needsBeta])["anthropic-beta"].GetString());
    }

    [Fact]
    public void PromptCacheBreakpoints_WithoutSystemPrompt_MarkTheLastToolThatIsNotDeferred()
    {
        var tools = new JsonArray(
            JsonNode.Parse("""{"name":"a","input_schema":{"type":"object"}}"""),
            JsonNode.Parse("""{"type":"tool_search_tool_bm25_20251119","name":"tool_search_tool_bm25"}"""),
            JsonNode.Parse("""{"name":"b","input_schema":{"type":"object"},"defer_loading":true}"""));

        var (_, marked) = PromptCacheBreakpoints.Apply(null, tools, [], "5m");

        Assert.Null(marked[2]!["cache_control"]);
        Assert.NotNull(marked[1]!["cache_control"]);
        Assert.Null(tools[1]!["cache_control"]);
    }

    private static ServerTool FromJson(string json) => ServerTool.FromJson(JsonDocument.Parse(json).RootElement);
}
