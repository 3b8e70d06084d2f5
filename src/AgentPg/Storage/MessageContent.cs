using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.Storage;

/// <summary>The content column of agentpg_messages: a JSON array of the message's blocks, each exactly as Claude's Messages
/// API has it. Blocks Claude returned are stored as it sent them and sent back verbatim; blocks AgentPg writes (prompts,
/// tool results, summaries) are built in the same format. A tool_result whose content is an array of blocks also carries
/// its text form in <see cref="TextKey"/>, which is never sent.</summary>
internal static class MessageContent
{
    /// <summary>The key of a tool_result with content blocks that holds its text form (<see cref="ContentBlock.ToolContent"/>).</summary>
    public const string TextKey = "agentpg_text";

    /// <summary>One text block.</summary>
    public static string Text(string text) => "[{\"type\":\"text\",\"text\":" + JsonSerializer.Serialize(text) + "}]";

    /// <summary>Blocks as Claude sent them.</summary>
    public static string FromClaude(IReadOnlyList<JsonObject> blocks)
    {
        var json = new StringBuilder("[");
        foreach (var block in blocks)
        {
            if (json.Length > 1)
            {
                json.Append(',');
            }

            json.Append(block.ToJsonString());
        }

        return json.Append(']').ToString();
    }

    /// <summary>Reads a content column.</summary>
    public static List<ContentBlock> Read(string json)
    {
        JsonElement content;
        using (var document = JsonDocument.Parse(json))
        {
            // One copy that outlives the document; the blocks' elements point into it.
            content = document.RootElement.Clone();
        }

        var blocks = new List<ContentBlock>(content.ValueKind == JsonValueKind.Array ? content.GetArrayLength() : 0);
        if (content.ValueKind == JsonValueKind.Array)
        {
            foreach (var element in content.EnumerateArray())
            {
                if (element.ValueKind == JsonValueKind.Object)
                {
                    blocks.Add(ToBlock(element));
                }
            }
        }

        return blocks;
    }

    private static ContentBlock ToBlock(JsonElement block)
    {
        var type = String(block, "type") ?? "other";
        var isToolCall = type is ContentTypes.ToolUse or ContentTypes.ServerToolUse or "mcp_tool_use";
        var isToolResult = type is ContentTypes.ToolResult or "mcp_tool_result" || type.EndsWith("_tool_result", StringComparison.Ordinal);
        var raw = block;
        string? toolContent = null;
        IReadOnlyList<ContentBlock> toolContentBlocks = [];
        if (type == ContentTypes.ToolResult)
        {
            var content = block.TryGetProperty("content", out var c) ? c : default;
            if (content.ValueKind == JsonValueKind.Array)
            {
                toolContentBlocks = ContentBlocks.FromJsonArray(content);
            }

            toolContent = String(block, TextKey) ?? (content.ValueKind == JsonValueKind.String ? content.GetString() : null) ?? "";
            if (block.TryGetProperty(TextKey, out _))
            {
                var sent = JsonNode.Parse(block.GetRawText())!.AsObject();
                sent.Remove(TextKey);
                raw = JsonSerializer.SerializeToElement(sent);
            }
        }

        // A server tool's result (web_search_tool_result, …): its content is the result, or an object with an error_code.
        var serverResult = isToolResult && type != ContentTypes.ToolResult && type != "mcp_tool_result" && block.TryGetProperty("content", out var sc)
            ? sc : default;
        var serverError = serverResult.ValueKind == JsonValueKind.Object ? String(serverResult, "error_code") : null;
        return new ContentBlock
        {
            Type = type,
            Text = type switch
            {
                ContentTypes.Text => String(block, "text"),
                ContentTypes.Thinking => String(block, "thinking"),
                _ => null,
            },
            Signature = type == ContentTypes.Thinking ? String(block, "signature") : null,
            ToolUseId = isToolCall ? String(block, "id") : null,
            ToolName = isToolCall ? String(block, "name") : null,
            ToolInput = isToolCall ? (block.TryGetProperty("input", out var input) ? input : s_emptyObject) : null,
            ToolResultForUseId = isToolResult ? String(block, "tool_use_id") : null,
            ToolContent = toolContent,
            ToolContentBlocks = toolContentBlocks,
            IsError = serverError is not null || (isToolResult && block.TryGetProperty("is_error", out var isError) && isError.ValueKind == JsonValueKind.True),
            ServerToolErrorCode = serverError,
            Citations = type == ContentTypes.Text && block.TryGetProperty("citations", out var citations) && citations.ValueKind == JsonValueKind.Array
                ? ReadCitations(citations) : [],
            WebSearchResults = serverError is null && type == ContentTypes.WebSearchToolResult ? ReadWebSearchResults(serverResult) : [],
            WebFetchResult = serverError is null && type == ContentTypes.WebFetchToolResult ? ReadWebFetchResult(serverResult) : null,
            CodeExecutionResult = serverError is null && type is ContentTypes.CodeExecutionToolResult or ContentTypes.BashCodeExecutionToolResult
                ? ReadCodeExecutionResult(serverResult) : null,
            Source = type is ContentTypes.Image or ContentTypes.Document && block.TryGetProperty("source", out var source) ? source : null,
            Raw = raw,
        };
    }

    private static List<Citation> ReadCitations(JsonElement citations)
    {
        var list = new List<Citation>(citations.GetArrayLength());
        foreach (var c in citations.EnumerateArray())
        {
            if (c.ValueKind != JsonValueKind.Object)
            {
                continue;
            }

            var type = String(c, "type") ?? "";
            var (start, end) = type switch
            {
                "char_location" => ("start_char_index", "end_char_index"),
                "page_location" => ("start_page_number", "end_page_number"),
                _ => ("start_block_index", "end_block_index"),
            };
            list.Add(new Citation
            {
                Type = type,
                CitedText = String(c, "cited_text"),
                Url = String(c, "url") ?? String(c, "source"),
                Title = String(c, "title") ?? String(c, "document_title"),
                DocumentIndex = Int(c, "document_index") ?? Int(c, "search_result_index"),
                Start = Int(c, start),
                End = Int(c, end),
                Raw = c,
            });
        }

        return list;
    }

    private static List<WebSearchResult> ReadWebSearchResults(JsonElement content)
    {
        var results = new List<WebSearchResult>();
        if (content.ValueKind == JsonValueKind.Array)
        {
            foreach (var r in content.EnumerateArray())
            {
                if (r.ValueKind == JsonValueKind.Object && String(r, "url") is { } url)
                {
                    results.Add(new WebSearchResult { Url = url, Title = String(r, "title"), PageAge = String(r, "page_age") });
                }
            }
        }

        return results;
    }

    private static WebFetchResult? ReadWebFetchResult(JsonElement content)
    {
        if (content.ValueKind != JsonValueKind.Object || String(content, "url") is not { } url)
        {
            return null;
        }

        var document = content.TryGetProperty("content", out var d) && d.ValueKind == JsonValueKind.Object ? d : (JsonElement?)null;
        var source = document is { } doc && doc.TryGetProperty("source", out var s) && s.ValueKind == JsonValueKind.Object ? s : default;
        return new WebFetchResult
        {
            Url = url,
            RetrievedAt = DateTimeOffset.TryParse(String(content, "retrieved_at"), CultureInfo.InvariantCulture,
                DateTimeStyles.AssumeUniversal, out var at) ? at : null,
            Title = document is { } titled ? String(titled, "title") : null,
            Text = source.ValueKind == JsonValueKind.Object && String(source, "type") == "text" ? String(source, "data") : null,
            Document = document,
        };
    }

    private static CodeExecutionResult? ReadCodeExecutionResult(JsonElement content)
    {
        if (content.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        var files = new List<string>();
        if (content.TryGetProperty("content", out var outputs) && outputs.ValueKind == JsonValueKind.Array)
        {
            foreach (var output in outputs.EnumerateArray())
            {
                if (output.ValueKind == JsonValueKind.Object && String(output, "file_id") is { } fileId)
                {
                    files.Add(fileId);
                }
            }
        }

        return new CodeExecutionResult
        {
            Stdout = String(content, "stdout") ?? "",
            Stderr = String(content, "stderr") ?? "",
            ReturnCode = Int(content, "return_code") ?? 0,
            FileIds = files,
        };
    }

    private static int? Int(JsonElement e, string name)
        => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : null;

    private static readonly JsonElement s_emptyObject = JsonDocument.Parse("{}").RootElement;

    private static string? String(JsonElement block, string name)
        => block.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
