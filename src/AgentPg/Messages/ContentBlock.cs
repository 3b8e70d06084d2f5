using System.Text.Json;

namespace AgentPg;

/// <summary>One block of a message's content.</summary>
/// <remarks>Blocks Claude returned are stored losslessly: <see cref="Raw"/> holds the block exactly as Claude sent it,
/// and it is sent back verbatim in later requests.</remarks>
public sealed record ContentBlock
{
    /// <summary>Gets the block type, for example <see cref="ContentTypes.Text"/>.</summary>
    public required string Type { get; init; }

    /// <summary>Gets the text of a text or thinking block.</summary>
    public string? Text { get; init; }

    /// <summary>Gets the id of a tool_use (or server_tool_use) block.</summary>
    public string? ToolUseId { get; init; }

    /// <summary>Gets the tool name of a tool_use block.</summary>
    public string? ToolName { get; init; }

    /// <summary>Gets the input of a tool_use block.</summary>
    public JsonElement? ToolInput { get; init; }

    /// <summary>Gets the tool_use id a tool_result block answers.</summary>
    public string? ToolResultForUseId { get; init; }

    /// <summary>Gets the content of a tool_result block.</summary>
    public string? ToolContent { get; init; }

    /// <summary>Gets whether a tool_result block reports an error.</summary>
    public bool IsError { get; init; }

    /// <summary>Gets the source of an image or document block.</summary>
    public JsonElement? Source { get; init; }

    /// <summary>Gets the signature of a thinking block.</summary>
    public string? Signature { get; init; }

    /// <summary>Gets the block exactly as Claude sent it, when it came from Claude.</summary>
    public JsonElement? Raw { get; init; }
}
