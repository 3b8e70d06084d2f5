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

    /// <summary>Gets the content of a tool_result block as text; for a result with images or documents, its text blocks
    /// joined, with a bracketed line for each image or document.</summary>
    public string? ToolContent { get; init; }

    /// <summary>Gets the content blocks (text, image, document) of a tool_result block whose tool returned images or
    /// documents (<see cref="IContentTool"/>); empty when the result is text only (<see cref="ToolContent"/>).</summary>
    public IReadOnlyList<ContentBlock> ToolContentBlocks { get; init; } = [];

    /// <summary>Gets whether a tool_result block reports an error.</summary>
    public bool IsError { get; init; }

    /// <summary>Gets the source of an image or document block.</summary>
    public JsonElement? Source { get; init; }

    /// <summary>Gets the signature of a thinking block.</summary>
    public string? Signature { get; init; }

    /// <summary>Gets the block in Claude's wire format, as later requests send it: exactly as Claude sent it for a block
    /// Claude returned. Every block read from the database has it; a block built in code may leave it unset.</summary>
    public JsonElement? Raw { get; init; }
}
