using System.Text;
using System.Text.Json.Nodes;

namespace AgentPg.Compaction;

/// <summary>The token estimate used where an exact count would cost a request: about four UTF-8 bytes per token, plus a
/// small overhead per message and per tool block, so it tends to count a little more than Claude does.</summary>
internal static class TokenEstimate
{
    public const int MessageOverhead = 4;
    public const int ToolBlockOverhead = 10;
    public const int ImageTokens = 1600;

    public static long Of(string? text) => string.IsNullOrEmpty(text) ? 0 : (Encoding.UTF8.GetByteCount(text) + 3) / 4;

    public static long Of(Message message)
    {
        long tokens = MessageOverhead;
        foreach (var block in message.Content)
        {
            tokens += Of(block);
        }

        return tokens;
    }

    public static long Of(ContentBlock block) => block.Type switch
    {
        ContentTypes.Text => Of(block.Text),
        ContentTypes.Thinking => Of(block.Text),
        ContentTypes.ToolUse => ToolBlockOverhead + Of(block.ToolName) + Of(block.ToolInput?.GetRawText()),
        // A result with images or documents (IContentTool) counts its blocks; its text adds a line per image.
        ContentTypes.ToolResult => ToolBlockOverhead + (block.ToolContentBlocks.Count == 0 ? Of(block.ToolContent) : block.ToolContentBlocks.Sum(Of)),
        ContentTypes.Image => ImageTokens,
        ContentTypes.Document => TextSource(block) is { } text ? Of(text) : ImageTokens,
        _ => Of(block.Raw?.GetRawText() ?? block.Text),
    };

    /// <summary>The text of a document block with a text source (<c>{"type":"text","data":…}</c>).</summary>
    private static string? TextSource(ContentBlock block)
        => block.Source is { ValueKind: System.Text.Json.JsonValueKind.Object } source
           && source.TryGetProperty("type", out var type) && type.ValueEquals("text")
           && source.TryGetProperty("data", out var data) && data.ValueKind == System.Text.Json.JsonValueKind.String
            ? data.GetString()
            : null;

    /// <summary>The estimate of a whole request: tools, system prompt and messages.</summary>
    public static long OfRequest(string? system, JsonArray tools, IReadOnlyList<Message> history)
    {
        var tokens = Of(system);
        foreach (var tool in tools)
        {
            tokens += Of(tool?.ToJsonString());
        }

        foreach (var message in history)
        {
            tokens += Of(message);
        }

        return tokens;
    }
}
