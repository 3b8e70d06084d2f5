using ModelContextProtocol.Protocol;

namespace AgentPg.Mcp;

/// <summary>Turns an MCP tool result into the text of an AgentPg tool result.</summary>
/// <remarks>AgentPg tool results are text (<see cref="ITool.ExecuteAsync"/> returns a string), so text blocks are joined
/// with a newline, embedded text resources are included with their URI, and binary content (images, audio, blobs) and
/// resource links are described in a bracketed line rather than passed to Claude as content blocks.</remarks>
internal static class McpContent
{
    public static string ToText(CallToolResult result)
    {
        var parts = new List<string>();
        foreach (var block in result.Content ?? [])
        {
            parts.Add(block switch
            {
                TextContentBlock text => text.Text,
                ImageContentBlock image => $"[image: {image.MimeType}, {Base64Length(image.Data.Length)} bytes; not shown: AgentPg passes tool results to Claude as text]",
                AudioContentBlock audio => $"[audio: {audio.MimeType}, {Base64Length(audio.Data.Length)} bytes; not shown: AgentPg passes tool results to Claude as text]",
                EmbeddedResourceBlock { Resource: TextResourceContents text } => $"[resource {text.Uri}{Mime(text.MimeType)}]\n{text.Text}",
                EmbeddedResourceBlock { Resource: BlobResourceContents blob } => $"[resource {blob.Uri}{Mime(blob.MimeType)}: {Base64Length(blob.Blob.Length)} bytes of binary content, not shown]",
                ResourceLinkBlock link => $"[resource link: {link.Name} {link.Uri}{Mime(link.MimeType)}{(string.IsNullOrEmpty(link.Description) ? "" : " - " + link.Description)}]",
                _ => $"[{block.Type} content, not shown]",
            });
        }

        if (parts.Count == 0 && result.StructuredContent is { } structured)
        {
            // Tools with an output schema should also send the JSON as text; when one does not, Claude gets the JSON.
            return structured.ToString();
        }

        return string.Join('\n', parts);
    }

    private static string Mime(string? mimeType) => string.IsNullOrEmpty(mimeType) ? "" : $" ({mimeType})";

    private static long Base64Length(int encodedLength) => encodedLength / 4L * 3;
}
