using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>A <c>tool_result</c> block of the request's last user turn.</summary>
/// <param name="ToolUseId">The <c>tool_use_id</c>.</param>
public sealed record FakeToolResult(string ToolUseId)
{
    /// <summary>The name of the tool the matching tool_use block called, or <see langword="null"/> when it is unknown.</summary>
    public string? ToolName { get; init; }

    /// <summary>The result as text: the string content, or its text blocks joined by newlines.</summary>
    public string Content { get; init; } = "";

    /// <summary>The content blocks (text, image, document, search_result) when the content is a list; empty when it is a
    /// string. The server has validated them as the real API does: an image's media type is one Claude accepts and its
    /// base64 data is such an image, a document is a PDF or plain text.</summary>
    public IReadOnlyList<JsonElement> Blocks { get; init; } = [];

    /// <summary>The <c>is_error</c> flag.</summary>
    public bool IsError { get; init; }

    /// <summary>The block as sent.</summary>
    public JsonElement Json { get; init; }
}
