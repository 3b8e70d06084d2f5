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

    /// <summary>Gets the tool name of a tool_use (or server_tool_use) block.</summary>
    public string? ToolName { get; init; }

    /// <summary>Gets the input of a tool_use (or server_tool_use) block.</summary>
    public JsonElement? ToolInput { get; init; }

    /// <summary>Gets the tool_use id a tool_result block answers (the server_tool_use id, for a server tool's result).</summary>
    public string? ToolResultForUseId { get; init; }

    /// <summary>Gets the content of a tool_result block as text; for a result with images or documents, its text blocks
    /// joined, with a bracketed line for each image or document.</summary>
    public string? ToolContent { get; init; }

    /// <summary>Gets the content blocks (text, image, document) of a tool_result block whose tool returned images or
    /// documents (<see cref="IContentTool"/>); empty when the result is text only (<see cref="ToolContent"/>).</summary>
    public IReadOnlyList<ContentBlock> ToolContentBlocks { get; init; } = [];

    /// <summary>Gets whether a tool_result block reports an error, or a server tool's result block an error code
    /// (<see cref="ServerToolErrorCode"/>).</summary>
    public bool IsError { get; init; }

    /// <summary>Gets the passages a text block cites (its <c>citations</c>), in order; empty when it cites none.</summary>
    public IReadOnlyList<Citation> Citations { get; init; } = [];

    /// <summary>Gets the results of a <see cref="ContentTypes.WebSearchToolResult"/> block, in order; empty for other blocks and
    /// for a search that failed (<see cref="ServerToolErrorCode"/>).</summary>
    public IReadOnlyList<WebSearchResult> WebSearchResults { get; init; } = [];

    /// <summary>Gets the page of a <see cref="ContentTypes.WebFetchToolResult"/> block; null for other blocks and for a fetch that
    /// failed (<see cref="ServerToolErrorCode"/>).</summary>
    public WebFetchResult? WebFetchResult { get; init; }

    /// <summary>Gets the output of a <see cref="ContentTypes.CodeExecutionToolResult"/> or
    /// <see cref="ContentTypes.BashCodeExecutionToolResult"/> block; null for other blocks and for a run that failed
    /// (<see cref="ServerToolErrorCode"/>).</summary>
    public CodeExecutionResult? CodeExecutionResult { get; init; }

    /// <summary>Gets the error code of a server tool's result block that reports an error (its content's <c>error_code</c>, for
    /// example <c>max_uses_exceeded</c>, <c>too_many_requests</c>, <c>url_not_accessible</c> or <c>unavailable</c>); null
    /// otherwise.</summary>
    public string? ServerToolErrorCode { get; init; }

    /// <summary>Gets the source of an image or document block.</summary>
    public JsonElement? Source { get; init; }

    /// <summary>Gets the signature of a thinking block.</summary>
    public string? Signature { get; init; }

    /// <summary>Gets the block in Claude's wire format, as later requests send it: exactly as Claude sent it for a block
    /// Claude returned. Every block read from the database has it; a block built in code may leave it unset.</summary>
    public JsonElement? Raw { get; init; }
}
