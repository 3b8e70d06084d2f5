using System.Globalization;
using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Internal;

namespace AgentPg;

/// <summary>One of Claude's server tools for an agent (<see cref="AgentDefinition.ServerTools"/>): a tool Claude runs itself, on
/// Anthropic's side — web search, web fetch, code execution, tool search — which AgentPg only offers and stores.</summary>
/// <remarks>
/// <para>Make one with the factories (<see cref="WebSearch"/>, <see cref="WebFetch"/>, <see cref="CodeExecution"/>,
/// <see cref="ToolSearch"/>), or send a definition AgentPg does not model with <see cref="FromJson"/>. Its
/// <see cref="Definition"/> goes into the <c>tools</c> of every model call of the agent's runs, streaming and batch, after the
/// client tools; Claude's calls of it come back as <c>server_tool_use</c> blocks followed by their result blocks
/// (<c>web_search_tool_result</c>, …), which AgentPg stores and sends back exactly as they came. A long server-tool turn ends
/// with the stop reason <c>pause_turn</c>, and the run continues it with a new model call (counted by
/// <see cref="AgentPgOptions.MaxContinuations"/>).</para>
/// <para>Server tools are billed by Anthropic per use on top of tokens, and not every model offers every tool: a model that
/// does not answers 400, which fails the run. See docs/tools.md, "Server tools".</para>
/// </remarks>
public sealed record ServerTool
{
    /// <summary>The <c>type</c> <see cref="WebSearch"/> sends: <c>web_search_20250305</c>.</summary>
    public const string WebSearchType = "web_search_20250305";

    /// <summary>The <c>type</c> <see cref="WebFetch"/> sends: <c>web_fetch_20250910</c>.</summary>
    public const string WebFetchType = "web_fetch_20250910";

    /// <summary>The <c>type</c> <see cref="CodeExecution"/> sends: <c>code_execution_20250825</c>.</summary>
    public const string CodeExecutionType = "code_execution_20250825";

    /// <summary>The <c>type</c> of <see cref="ToolSearch"/> with <see cref="ToolSearchKind.Regex"/>:
    /// <c>tool_search_tool_regex_20251119</c>.</summary>
    public const string ToolSearchRegexType = "tool_search_tool_regex_20251119";

    /// <summary>The <c>type</c> of <see cref="ToolSearch"/> with <see cref="ToolSearchKind.Bm25"/>:
    /// <c>tool_search_tool_bm25_20251119</c>.</summary>
    public const string ToolSearchBm25Type = "tool_search_tool_bm25_20251119";

    // The definition as sent, compact; compared as text so two settings with the same definition are equal.
    private readonly string _definition;

    private ServerTool(JsonObject definition, string? beta, IReadOnlyList<string>? alwaysLoadedTools)
    {
        _definition = definition.ToJsonString();
        Type = (string)definition["type"]!;
        Name = (string)definition["name"]!;
        Beta = beta;
        AlwaysLoadedTools = alwaysLoadedTools is null ? [] : [.. alwaysLoadedTools];
    }

    /// <summary>Gets the tool's <c>type</c>, for example <c>web_search_20250305</c>.</summary>
    public string Type { get; }

    /// <summary>Gets the tool's <c>name</c>, for example <c>web_search</c>: the name Claude calls it by, unique among the agent's
    /// tools.</summary>
    public string Name { get; }

    /// <summary>Gets the tool definition exactly as it is sent in the request's <c>tools</c>.</summary>
    public JsonElement Definition => JsonElement.Parse(_definition);

    /// <summary>Gets the <c>anthropic-beta</c> value the tool needs, sent with every model call of the agent, or
    /// <see langword="null"/> for none (the tools the factories make need none).</summary>
    public string? Beta { get; }

    /// <summary>Gets, for a tool search tool, the client tools and delegate agents that are not deferred: sent with their full
    /// definition on every call, while every other one is sent with <c>defer_loading: true</c>. Empty for other server
    /// tools.</summary>
    public IReadOnlyList<string> AlwaysLoadedTools { get; }

    /// <summary>Gets whether this is a tool search tool (<see cref="ToolSearch"/>, or a <c>tool_search_tool_*</c> definition
    /// given to <see cref="FromJson"/>): the agent's client tools and delegates are then deferred.</summary>
    public bool IsToolSearch => Type.StartsWith("tool_search_tool_", StringComparison.Ordinal);

    /// <summary>Claude's web search (<c>{"type": "web_search_20250305", "name": "web_search", …}</c>): Claude searches the web
    /// and answers with cited sources.</summary>
    /// <param name="maxUses">The most searches per model call (<c>max_uses</c>, at least 1), or <see langword="null"/> for no
    /// limit. Beyond it Claude gets a <c>max_uses_exceeded</c> error result.</param>
    /// <param name="allowedDomains">The only domains results may come from (<c>allowed_domains</c>, for example
    /// <c>"example.com"</c>, without a scheme), or <see langword="null"/>.</param>
    /// <param name="blockedDomains">Domains results never come from (<c>blocked_domains</c>), or <see langword="null"/>; not
    /// together with <paramref name="allowedDomains"/>.</param>
    /// <param name="userLocation">The user's approximate location, for local results, or <see langword="null"/>.</param>
    /// <returns>The tool.</returns>
    /// <exception cref="ArgumentException">Both domain lists are given, a domain is empty or has a scheme, or the location is
    /// empty or its country is not two letters.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxUses"/> is less than 1.</exception>
    public static ServerTool WebSearch(
        int? maxUses = null, IReadOnlyList<string>? allowedDomains = null, IReadOnlyList<string>? blockedDomains = null,
        WebSearchUserLocation? userLocation = null)
    {
        var definition = new JsonObject { ["type"] = WebSearchType, ["name"] = "web_search" };
        AddLimits(definition, maxUses, allowedDomains, blockedDomains, "ServerTool.WebSearch");
        if (userLocation is not null)
        {
            definition["user_location"] = userLocation.ToJson();
        }

        return new(definition, null, null);
    }

    /// <summary>Claude's web fetch (<c>{"type": "web_fetch_20250910", "name": "web_fetch", …}</c>): Claude reads the full
    /// text of a web page or PDF whose URL the conversation holds (Claude cannot make URLs up).</summary>
    /// <param name="maxUses">The most fetches per model call (<c>max_uses</c>, at least 1), or <see langword="null"/> for no
    /// limit.</param>
    /// <param name="allowedDomains">The only domains Claude may fetch from (<c>allowed_domains</c>), or <see langword="null"/>.</param>
    /// <param name="blockedDomains">Domains Claude never fetches from (<c>blocked_domains</c>), or <see langword="null"/>; not
    /// together with <paramref name="allowedDomains"/>.</param>
    /// <param name="citations">Whether Claude cites passages of the fetched documents (<c>citations.enabled</c>; off by
    /// default).</param>
    /// <param name="maxContentTokens">The most tokens of page text a fetch adds to the context (<c>max_content_tokens</c>, at
    /// least 1), or <see langword="null"/> for Claude's default.</param>
    /// <returns>The tool.</returns>
    /// <exception cref="ArgumentException">Both domain lists are given, or a domain is empty or has a scheme.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="maxUses"/> or <paramref name="maxContentTokens"/> is less
    /// than 1.</exception>
    public static ServerTool WebFetch(
        int? maxUses = null, IReadOnlyList<string>? allowedDomains = null, IReadOnlyList<string>? blockedDomains = null,
        bool citations = false, int? maxContentTokens = null)
    {
        var definition = new JsonObject { ["type"] = WebFetchType, ["name"] = "web_fetch" };
        AddLimits(definition, maxUses, allowedDomains, blockedDomains, "ServerTool.WebFetch");
        if (citations)
        {
            definition["citations"] = new JsonObject { ["enabled"] = true };
        }

        if (maxContentTokens is { } tokens)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(tokens, 1, nameof(maxContentTokens));
            definition["max_content_tokens"] = tokens;
        }

        return new(definition, null, null);
    }

    /// <summary>Claude's code execution (<c>{"type": "code_execution_20250825", "name": "code_execution"}</c>): Claude runs Bash
    /// commands and edits files in a sandbox on Anthropic's side.</summary>
    /// <returns>The tool.</returns>
    public static ServerTool CodeExecution()
        => new(new JsonObject { ["type"] = CodeExecutionType, ["name"] = "code_execution" }, null, null);

    /// <summary>Claude's tool search (<c>tool_search_tool_regex_20251119</c> or <c>tool_search_tool_bm25_20251119</c>): the
    /// agent's client tools and delegate agents are sent with <c>defer_loading: true</c>, so Claude sees only their names
    /// until it searches, and loads the definitions of the tools it finds.</summary>
    /// <param name="kind">How Claude searches: regular expressions or natural-language queries (BM25).</param>
    /// <param name="alwaysLoadedTools">Client tools and delegate agents sent in full on every call (not deferred), for the few
    /// an agent uses on most turns; <see langword="null"/> defers all of them. The memory tool and the other server tools are
    /// never deferred.</param>
    /// <returns>The tool.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="kind"/> is not a <see cref="ToolSearchKind"/> value.</exception>
    /// <exception cref="ArgumentException">A name in <paramref name="alwaysLoadedTools"/> is not a valid tool name or is listed
    /// twice.</exception>
    public static ServerTool ToolSearch(ToolSearchKind kind, IReadOnlyList<string>? alwaysLoadedTools = null)
    {
        var (type, name) = kind switch
        {
            ToolSearchKind.Regex => (ToolSearchRegexType, "tool_search_tool_regex"),
            ToolSearchKind.Bm25 => (ToolSearchBm25Type, "tool_search_tool_bm25"),
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Not a ToolSearchKind value."),
        };
        ValidateAlwaysLoaded(alwaysLoadedTools);
        return new(new JsonObject { ["type"] = type, ["name"] = name }, null, alwaysLoadedTools);
    }

    /// <summary>A server tool definition AgentPg does not model, sent exactly as given: a newer tool version (for example
    /// <c>{"type": "web_search_20260209", "name": "web_search"}</c>) or a field the factories do not set.</summary>
    /// <param name="definition">The tool definition: a JSON object with a string <c>type</c> and a <c>name</c> that follows
    /// Claude's tool-name rule (<c>^[a-zA-Z0-9_-]{1,64}$</c>), and no <c>cache_control</c> (AgentPg places the prompt-cache
    /// breakpoints). A <c>tool_search_tool_*</c> type makes it a tool search tool, which defers the agent's client tools.</param>
    /// <param name="beta">The <c>anthropic-beta</c> value the tool needs (for example <c>"code-execution-2025-08-25"</c>), or
    /// <see langword="null"/>.</param>
    /// <returns>The tool.</returns>
    /// <exception cref="ArgumentException">The definition is not such an object, has <c>cache_control</c>, or a
    /// <c>web_search_*</c> or <c>web_fetch_*</c> definition has both domain lists or a <c>max_uses</c> below 1; or the beta is
    /// empty or holds a comma.</exception>
    public static ServerTool FromJson(JsonElement definition, string? beta = null)
    {
        const string Field = "The server tool definition";
        if (definition.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"{Field} must be a JSON object such as {{\"type\": \"web_search_20260209\", \"name\": \"web_search\"}} (was {definition.ValueKind}).", nameof(definition));
        }

        Nul.RejectInJson(definition.GetRawText(), nameof(definition), Field);
        if (!definition.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String || type.GetString()!.Length == 0)
        {
            throw new ArgumentException($"{Field} has no string \"type\"; Claude needs it to know the tool, for example \"web_search_20260209\".", nameof(definition));
        }

        if (type.GetString() == "custom")
        {
            throw new ArgumentException($"{Field} has the type \"custom\", a client tool: register an ITool (AgentPgClient.RegisterTool) instead.", nameof(definition));
        }

        if (!definition.TryGetProperty("name", out var name) || name.ValueKind != JsonValueKind.String || !ToolNames.IsValid(name.GetString()))
        {
            throw new ArgumentException($"{Field} needs a \"name\" that follows Claude's tool-name rule {ToolNames.Rule}, for example \"web_search\".", nameof(definition));
        }

        if (definition.TryGetProperty("cache_control", out _))
        {
            throw new ArgumentException($"{Field} has \"cache_control\": AgentPg places the prompt-cache breakpoints itself (AgentPgOptions.PromptCaching). Remove it.", nameof(definition));
        }

        var wire = type.GetString()!;
        if (wire.StartsWith("web_search_", StringComparison.Ordinal) || wire.StartsWith("web_fetch_", StringComparison.Ordinal))
        {
            if (definition.TryGetProperty("allowed_domains", out var allowed) && allowed.ValueKind != JsonValueKind.Null
                && definition.TryGetProperty("blocked_domains", out var blocked) && blocked.ValueKind != JsonValueKind.Null)
            {
                throw new ArgumentException($"{Field} ({wire}) has both \"allowed_domains\" and \"blocked_domains\"; Claude takes one of them. Keep one.", nameof(definition));
            }

            if (definition.TryGetProperty("max_uses", out var maxUses) && (!maxUses.TryGetInt32(out var uses) || uses < 1))
            {
                throw new ArgumentException($"{Field} ({wire}) has \"max_uses\" {maxUses.GetRawText()}; it must be a whole number of at least 1 (or absent for no limit).", nameof(definition));
            }
        }

        if (beta is not null && (beta.Length == 0 || beta.Contains(',', StringComparison.Ordinal) || beta.Any(char.IsWhiteSpace)))
        {
            throw new ArgumentException($"The beta '{beta}' must be one anthropic-beta value, such as \"code-execution-2025-08-25\" (no comma or space).", nameof(beta));
        }

        return new(JsonNode.Parse(definition.GetRawText())!.AsObject(), beta, null);
    }

    /// <inheritdoc />
    public bool Equals(ServerTool? other)
        => other is not null && _definition == other._definition && Beta == other.Beta && AlwaysLoadedTools.SequenceEqual(other.AlwaysLoadedTools);

    /// <inheritdoc />
    public override int GetHashCode() => HashCode.Combine(_definition, Beta);

    /// <summary>The definition sent to Claude, as a new node.</summary>
    internal JsonObject ToDefinitionNode() => JsonNode.Parse(_definition)!.AsObject();

    /// <summary>The stored form of an agent's server tools: <c>[{"definition": {…}, "beta": …, "always_loaded": […]}, …]</c>, in
    /// a <c>json</c> column, which keeps the definitions' text (and so the request's cached prefix) as configured.</summary>
    internal static string? ToJson(IReadOnlyList<ServerTool>? tools)
    {
        if (tools is null)
        {
            return null;
        }

        var array = new JsonArray();
        foreach (var tool in tools)
        {
            var entry = new JsonObject { ["definition"] = tool.ToDefinitionNode() };
            if (tool.Beta is not null)
            {
                entry["beta"] = tool.Beta;
            }

            if (tool.AlwaysLoadedTools.Count > 0)
            {
                entry["always_loaded"] = new JsonArray([.. tool.AlwaysLoadedTools.Select(n => (JsonNode)n)]);
            }

            array.Add(entry);
        }

        return array.ToJsonString();
    }

    /// <summary>Reads what <see cref="ToJson"/> wrote.</summary>
    internal static IReadOnlyList<ServerTool> FromStoredJson(string json)
    {
        var result = new List<ServerTool>();
        foreach (var entry in JsonNode.Parse(json)!.AsArray())
        {
            var alwaysLoaded = entry!["always_loaded"] is JsonArray names ? names.Select(n => (string)n!).ToList() : null;
            result.Add(new(entry["definition"]!.AsObject().DeepClone().AsObject(), (string?)entry["beta"], alwaysLoaded));
        }

        return result;
    }

    private static void AddLimits(JsonObject definition, int? maxUses, IReadOnlyList<string>? allowedDomains, IReadOnlyList<string>? blockedDomains, string factory)
    {
        if (maxUses is { } uses)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(uses, 1, nameof(maxUses));
            definition["max_uses"] = uses;
        }

        if (allowedDomains is not null && blockedDomains is not null)
        {
            throw new ArgumentException(
                $"{factory} takes allowedDomains or blockedDomains, not both (Claude refuses the two together). Keep one of them.", nameof(blockedDomains));
        }

        if (allowedDomains is not null)
        {
            definition["allowed_domains"] = Domains(allowedDomains, nameof(allowedDomains), factory);
        }

        if (blockedDomains is not null)
        {
            definition["blocked_domains"] = Domains(blockedDomains, nameof(blockedDomains), factory);
        }
    }

    private static JsonArray Domains(IReadOnlyList<string> domains, string parameterName, string factory)
    {
        var array = new JsonArray();
        foreach (var domain in domains)
        {
            if (string.IsNullOrWhiteSpace(domain) || domain.Contains("://", StringComparison.Ordinal) || domain.Any(char.IsWhiteSpace))
            {
                throw new ArgumentException(
                    $"{factory}: '{domain}' in {parameterName} is not a domain; give it without a scheme or spaces, for example \"example.com\" or \"docs.example.com/api\".",
                    parameterName);
            }

            Nul.Reject(domain, parameterName, $"{factory} {parameterName}");
            array.Add(domain);
        }

        return array;
    }

    private static void ValidateAlwaysLoaded(IReadOnlyList<string>? alwaysLoadedTools)
    {
        if (alwaysLoadedTools is null)
        {
            return;
        }

        foreach (var name in alwaysLoadedTools)
        {
            if (!ToolNames.IsValid(name))
            {
                throw new ArgumentException(
                    $"ServerTool.ToolSearch: '{name}' in alwaysLoadedTools is not a valid tool name ({ToolNames.Rule}).", nameof(alwaysLoadedTools));
            }
        }

        if (alwaysLoadedTools.Distinct(StringComparer.Ordinal).Count() != alwaysLoadedTools.Count)
        {
            throw new ArgumentException("ServerTool.ToolSearch: alwaysLoadedTools lists a name more than once.", nameof(alwaysLoadedTools));
        }
    }

    /// <summary>The definition text, for logs and tests.</summary>
    /// <returns>The definition as JSON.</returns>
    public override string ToString() => _definition;
}

/// <summary>How Claude's tool search finds tools (<see cref="ServerTool.ToolSearch"/>).</summary>
public enum ToolSearchKind
{
    /// <summary>Claude writes regular expressions matched against tool names and descriptions
    /// (<c>tool_search_tool_regex_20251119</c>).</summary>
    Regex,

    /// <summary>Claude writes natural-language queries, ranked with BM25 (<c>tool_search_tool_bm25_20251119</c>).</summary>
    Bm25,
}

/// <summary>The user's approximate location for <see cref="ServerTool.WebSearch"/> (<c>user_location</c>,
/// <c>{"type": "approximate", …}</c>), so results are local; every field optional.</summary>
public sealed record WebSearchUserLocation
{
    /// <summary>Gets the city, for example <c>"San Francisco"</c>.</summary>
    public string? City { get; init; }

    /// <summary>Gets the region, for example <c>"California"</c>.</summary>
    public string? Region { get; init; }

    /// <summary>Gets the two-letter ISO 3166-1 country code, for example <c>"US"</c>.</summary>
    public string? Country { get; init; }

    /// <summary>Gets the IANA time zone, for example <c>"America/Los_Angeles"</c>.</summary>
    public string? Timezone { get; init; }

    internal JsonObject ToJson()
    {
        if (City is null && Region is null && Country is null && Timezone is null)
        {
            throw new ArgumentException("The WebSearchUserLocation has no field set: set City, Region, Country or Timezone, or pass no location.", "userLocation");
        }

        if (Country is { } country && (country.Length != 2 || !country.All(char.IsAsciiLetter)))
        {
            throw new ArgumentException($"WebSearchUserLocation.Country is '{country}'; Claude takes a two-letter ISO 3166-1 code such as \"US\".", "userLocation");
        }

        var json = new JsonObject { ["type"] = "approximate" };
        foreach (var (key, value) in new[] { ("city", City), ("region", Region), ("country", Country), ("timezone", Timezone) })
        {
            if (value is not null)
            {
                Nul.Reject(value, "userLocation", "WebSearchUserLocation." + char.ToUpper(key[0], CultureInfo.InvariantCulture) + key[1..]);
                json[key] = value;
            }
        }

        return json;
    }
}
