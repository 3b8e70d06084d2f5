using Microsoft.Extensions.AI;
using ModelContextProtocol.Protocol;

namespace AgentPg.Mcp;

/// <summary>Turns an MCP tool result into an AgentPg <see cref="ToolResult"/> (content blocks for Claude).</summary>
/// <remarks>Text blocks stay text; images and binary embedded resources become <see cref="DataContent"/>, which AgentPg
/// sends as image blocks (JPEG, PNG, GIF, WebP) or document blocks (PDF, plain text) when Claude accepts them and
/// describes in a bracketed text line otherwise (<see cref="ToolResult"/>); embedded text resources are included with
/// their URI; audio and resource links are described in text. <c>isError</c> becomes an error result.</remarks>
internal static class McpContent
{
    public static ToolResult ToResult(CallToolResult result, string toolName)
    {
        var content = new List<AIContent>();
        foreach (var block in result.Content ?? [])
        {
            content.Add(block switch
            {
                TextContentBlock text => new TextContent(text.Text),
                ImageContentBlock image => Data(() => image.DecodedData, image.MimeType, null, "image"),
                AudioContentBlock audio => new TextContent(
                    $"[audio: {audio.MimeType}, {Base64Length(audio.Data.Length)} bytes; not shown: Claude does not accept audio]"),
                EmbeddedResourceBlock { Resource: TextResourceContents text } => new TextContent($"[resource {text.Uri}{Mime(text.MimeType)}]\n{text.Text}"),
                EmbeddedResourceBlock { Resource: BlobResourceContents blob } => Data(() => blob.DecodedData, blob.MimeType, blob.Uri, "resource"),
                ResourceLinkBlock link => new TextContent(
                    $"[resource link: {link.Name} {link.Uri}{Mime(link.MimeType)}{(string.IsNullOrEmpty(link.Description) ? "" : " - " + link.Description)}]"),
                _ => new TextContent($"[{block.Type} content, not shown]"),
            });
        }

        if (content.Count == 0 && result.StructuredContent is { } structured)
        {
            // Tools with an output schema should also send the JSON as text; when one does not, Claude gets the JSON.
            content.Add(new TextContent(structured.ToString()));
        }

        if (result.IsError == true && content.All(c => c is TextContent { Text: null or "" }))
        {
            content.Add(new TextContent($"MCP tool '{toolName}' returned an error with no message"));
        }

        return new ToolResult { Content = content, IsError = result.IsError == true };
    }

    /// <summary>Binary content as <see cref="DataContent"/> (AgentPg decides whether Claude can take it); invalid base64 is
    /// described instead.</summary>
    private static AIContent Data(Func<ReadOnlyMemory<byte>> decode, string? mimeType, string? uri, string kind)
    {
        ReadOnlyMemory<byte> bytes;
        try
        {
            bytes = decode();
        }
        catch (FormatException)
        {
            return new TextContent($"[{kind}{(uri is null ? "" : " " + uri)}{Mime(mimeType)}; not shown: its base64 data is invalid]");
        }

        return new DataContent(bytes, string.IsNullOrEmpty(mimeType) ? "application/octet-stream" : mimeType) { Name = uri };
    }

    private static string Mime(string? mimeType) => string.IsNullOrEmpty(mimeType) ? "" : $" ({mimeType})";

    private static long Base64Length(int encodedLength) => encodedLength / 4L * 3;
}
