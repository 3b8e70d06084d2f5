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
            IsError = isToolResult && block.TryGetProperty("is_error", out var isError) && isError.ValueKind == JsonValueKind.True,
            Source = type is ContentTypes.Image or ContentTypes.Document && block.TryGetProperty("source", out var source) ? source : null,
            Raw = raw,
        };
    }

    private static readonly JsonElement s_emptyObject = JsonDocument.Parse("{}").RootElement;

    private static string? String(JsonElement block, string name)
        => block.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;
}
