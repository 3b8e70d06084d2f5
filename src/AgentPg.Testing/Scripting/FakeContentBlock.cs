using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>
/// One content block of a scripted assistant message. Make blocks with the static factories
/// (<see cref="Text(string)"/>, <see cref="ToolUse(string, object?, string?)"/>, <see cref="Thinking(string, string?)"/>…)
/// and combine them with <see cref="FakeReply.Message(FakeContentBlock[])"/>.
/// </summary>
public abstract record FakeContentBlock
{
    private protected FakeContentBlock()
    {
    }

    /// <summary>The block's <c>type</c> on the wire, for example <c>text</c> or <c>tool_use</c>.</summary>
    public abstract string Type { get; }

    /// <summary>A <c>text</c> block.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The block.</returns>
    public static FakeTextBlock Text(string text) => new(text);

    /// <summary>A <c>text</c> block that cites sources, as Claude writes after a web search or a fetch with citations, for
    /// example <c>CitedText("It is sunny.", FakeCitation.WebSearchResultLocation("https://example.org/paris", "Paris weather",
    /// "Sunny, 21 °C"))</c>.</summary>
    /// <param name="text">The text.</param>
    /// <param name="citations">The citation objects (see <see cref="FakeCitation"/>); each must have a string <c>type</c>.</param>
    /// <returns>The block.</returns>
    public static FakeTextBlock CitedText(string text, params IEnumerable<JsonElement> citations)
    {
        ArgumentNullException.ThrowIfNull(citations);
        var list = citations.Select(c => c.Clone()).ToList();
        if (list.FirstOrDefault(c => c.ValueKind != JsonValueKind.Object || !c.TryGetProperty("type", out var t) || t.ValueKind != JsonValueKind.String)
            is { ValueKind: not JsonValueKind.Undefined } bad)
        {
            throw new ArgumentException($"A citation must be a JSON object with a string \"type\"; got {bad.GetRawText()}.", nameof(citations));
        }

        return new(text) { Citations = list };
    }

    /// <summary>A <c>tool_use</c> block: the model calls <paramref name="name"/> with <paramref name="input"/>.</summary>
    /// <param name="name">The tool name.</param>
    /// <param name="input">The input object: an anonymous object, a dictionary, a <see cref="JsonElement"/>, a
    /// <c>JsonNode</c> or a JSON string; <see langword="null"/> means <c>{}</c>.</param>
    /// <param name="id">The tool_use id; <see langword="null"/> generates a fresh <c>toolu_01…</c> id for every answer.</param>
    /// <returns>The block.</returns>
    public static FakeToolUseBlock ToolUse(string name, object? input = null, string? id = null) =>
        new(name, FakeJson.ToObject(input, nameof(input))) { Id = id };

    /// <summary>A <c>tool_use</c> block calling Claude's memory tool (<c>memory_20250818</c>, always named <c>memory</c>) with
    /// one command, for example <c>Memory(new { command = "view", path = "/memories" })</c> or
    /// <c>Memory(new { command = "create", path = "/memories/notes.md", file_text = "…" })</c>.</summary>
    /// <param name="input">The command and its fields (<c>command</c>, <c>path</c>, <c>file_text</c>, <c>old_str</c>,
    /// <c>new_str</c>, <c>insert_line</c>, <c>insert_text</c>, <c>old_path</c>, <c>new_path</c>, <c>view_range</c>), as for
    /// <see cref="ToolUse(string, object?, string?)"/>.</param>
    /// <param name="id">The tool_use id; <see langword="null"/> generates one.</param>
    /// <returns>The block.</returns>
    public static FakeToolUseBlock Memory(object input, string? id = null) => ToolUse("memory", input, id);

    /// <summary>
    /// A <c>tool_use</c> block cut off by <c>max_tokens</c>: a stream sends exactly <paramref name="partialInputJson"/> (for
    /// example <c>{"location": "Par</c>) as <c>input_json_delta</c> chunks and stops mid-object, as the real API does. A
    /// non-streaming answer carries, as <c>input</c>, the top-level properties that were complete before the cut
    /// (<c>{}</c> when none). Use it with <see cref="FakeStopReason.MaxTokens"/>.
    /// </summary>
    /// <param name="name">The tool name.</param>
    /// <param name="partialInputJson">The JSON text the model produced before it was cut off.</param>
    /// <param name="id">The tool_use id; <see langword="null"/> generates one.</param>
    /// <returns>The block.</returns>
    public static FakeToolUseBlock TruncatedToolUse(string name, string partialInputJson, string? id = null)
    {
        ArgumentNullException.ThrowIfNull(partialInputJson);
        return new(name, FakeJson.CompleteTopLevelMembers(partialInputJson)) { Id = id, PartialInputJson = partialInputJson };
    }

    /// <summary>A <c>thinking</c> block (extended thinking).</summary>
    /// <param name="thinking">The thinking text.</param>
    /// <param name="signature">The signature; <see langword="null"/> derives a stable one from the text.</param>
    /// <returns>The block.</returns>
    public static FakeThinkingBlock Thinking(string thinking, string? signature = null)
    {
        ArgumentNullException.ThrowIfNull(thinking);
        return new(thinking, signature ?? Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes("thinking:" + thinking))));
    }

    /// <summary>A <c>redacted_thinking</c> block.</summary>
    /// <param name="data">The opaque data; <see langword="null"/> uses a fixed placeholder.</param>
    /// <returns>The block.</returns>
    public static FakeRedactedThinkingBlock RedactedThinking(string? data = null) =>
        new(data ?? "EmwKAhgBEgy3va3pzix/LafPsn4aDFIT2Xlxh0L5L8rLVyIwxtE3rAFBa8cr3qpP");

    /// <summary>
    /// Any other block, sent verbatim (for example <c>server_tool_use</c> or <c>web_search_tool_result</c>). A stream sends
    /// it whole in <c>content_block_start</c>, with no deltas.
    /// </summary>
    /// <param name="json">The block object; it must have a string <c>type</c>.</param>
    /// <returns>The block.</returns>
    public static FakeRawBlock Raw(JsonElement json) => new(json);

    /// <summary>A <c>server_tool_use</c> block: Claude calls one of its server tools, for example
    /// <c>ServerToolUse("web_search", new { query = "weather in Paris" }, "srvtoolu_01")</c>. Follow it with the tool's result
    /// block (<see cref="WebSearchToolResult"/>, <see cref="ToolSearchToolResult"/>, or <see cref="Raw(JsonElement)"/>) carrying
    /// the same id.</summary>
    /// <param name="name">The server tool's name, for example <c>web_search</c>.</param>
    /// <param name="input">The input, as for <see cref="ToolUse(string, object?, string?)"/>.</param>
    /// <param name="id">The id, which the result block repeats as its <c>tool_use_id</c>: <c>srvtoolu_</c> then letters, digits,
    /// <c>_</c> or <c>-</c>.</param>
    /// <returns>The block.</returns>
    public static FakeRawBlock ServerToolUse(string name, object? input, string id)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentException.ThrowIfNullOrEmpty(id);
        var block = new System.Text.Json.Nodes.JsonObject
        {
            ["type"] = "server_tool_use",
            ["id"] = id,
            ["name"] = name,
            ["input"] = System.Text.Json.Nodes.JsonNode.Parse(FakeJson.ToObject(input, nameof(input)).GetRawText()),
        };
        return new(JsonSerializer.SerializeToElement(block));
    }

    /// <summary>A <c>web_search_tool_result</c> block: the results of the web search <paramref name="toolUseId"/>, each a
    /// <c>web_search_result</c> with the URL, the title and an opaque <c>encrypted_content</c> (derived from the URL).</summary>
    /// <param name="toolUseId">The id of the <see cref="ServerToolUse"/> block it answers.</param>
    /// <param name="results">The results' URL and title.</param>
    /// <returns>The block.</returns>
    public static FakeRawBlock WebSearchToolResult(string toolUseId, params IEnumerable<(string Url, string Title)> results)
    {
        ArgumentException.ThrowIfNullOrEmpty(toolUseId);
        ArgumentNullException.ThrowIfNull(results);
        var content = new System.Text.Json.Nodes.JsonArray();
        foreach (var (url, title) in results)
        {
            content.Add(new System.Text.Json.Nodes.JsonObject
            {
                ["type"] = "web_search_result",
                ["url"] = url,
                ["title"] = title,
                ["encrypted_content"] = Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes("web_search_result:" + url))),
                ["page_age"] = null,
            });
        }

        return new(JsonSerializer.SerializeToElement(new System.Text.Json.Nodes.JsonObject
        {
            ["type"] = "web_search_tool_result",
            ["tool_use_id"] = toolUseId,
            ["content"] = content,
        }));
    }

    /// <summary>A <c>tool_search_tool_result</c> block: the tool search <paramref name="toolUseId"/> found
    /// <paramref name="toolNames"/>, each as a <c>tool_reference</c> (<c>{"type": "tool_search_tool_search_result",
    /// "tool_references": [{"type": "tool_reference", "tool_name": …}]}</c>); Claude may then call those deferred tools.</summary>
    /// <param name="toolUseId">The id of the <see cref="ServerToolUse"/> block (a call of <c>tool_search_tool_regex</c> or
    /// <c>tool_search_tool_bm25</c>) it answers.</param>
    /// <param name="toolNames">The tools found.</param>
    /// <returns>The block.</returns>
    public static FakeRawBlock ToolSearchToolResult(string toolUseId, params IEnumerable<string> toolNames)
    {
        ArgumentException.ThrowIfNullOrEmpty(toolUseId);
        ArgumentNullException.ThrowIfNull(toolNames);
        var references = new System.Text.Json.Nodes.JsonArray();
        foreach (var name in toolNames)
        {
            references.Add(new System.Text.Json.Nodes.JsonObject { ["type"] = "tool_reference", ["tool_name"] = name });
        }

        return new(JsonSerializer.SerializeToElement(new System.Text.Json.Nodes.JsonObject
        {
            ["type"] = "tool_search_tool_result",
            ["tool_use_id"] = toolUseId,
            ["content"] = new System.Text.Json.Nodes.JsonObject { ["type"] = "tool_search_tool_search_result", ["tool_references"] = references },
        }));
    }
}
