using Microsoft.Extensions.AI;

namespace AgentPg;

/// <summary>The result of an <see cref="IContentTool"/>: content for Claude (text, images, documents) and whether it
/// reports an error.</summary>
/// <remarks>
/// <para>The content uses the Microsoft.Extensions.AI content types and becomes the <c>content</c> array of the
/// <c>tool_result</c> block Claude sees:</para>
/// <list type="bullet">
/// <item><see cref="TextContent"/> → a text block (empty text is left out);</item>
/// <item><see cref="DataContent"/> with <c>image/jpeg</c>, <c>image/png</c>, <c>image/gif</c> or <c>image/webp</c>
/// → an image block (base64), when the bytes are such an image and at most <see cref="MaxImageBytes"/> long;</item>
/// <item><see cref="DataContent"/> with <c>application/pdf</c> → a document block (base64 PDF), at most
/// <see cref="MaxDocumentBytes"/>; with <c>text/plain</c> → a document block with a text source (UTF-8);</item>
/// <item>anything else (other media types, bytes that do not match their media type, content over the limits,
/// <see cref="UriContent"/>, other content types) → a text block describing it, because Claude would refuse the whole
/// request, and with it every later turn of the session, over one block it does not accept.</item>
/// </list>
/// <para>The text of the result (<see cref="ToolExecution.ToolOutput"/>, <see cref="ToolCall.Output"/>,
/// <see cref="ContentBlock.ToolContent"/>) is the text blocks joined with newlines, with a bracketed line for each image or
/// document; the blocks themselves are in <see cref="ToolExecution.ToolOutputBlocks"/>, <see cref="ToolCall.OutputBlocks"/>
/// and <see cref="ContentBlock.ToolContentBlocks"/>.</para>
/// <para>An error result (<see cref="IsError"/>) reaches Claude as an <c>is_error</c> tool_result with this content and
/// fails the execution without a retry (like <see cref="ToolDiscardException"/>, but with the tool's own content).</para>
/// </remarks>
public sealed record ToolResult
{
    /// <summary>The largest image, in bytes, sent to Claude as an image block (5 MB, Claude's limit per image).</summary>
    public const int MaxImageBytes = 5 * 1024 * 1024;

    /// <summary>The largest document, in bytes, sent to Claude as a document block (24 MB: base64 adds a third, and a
    /// request may not exceed 32 MB).</summary>
    public const int MaxDocumentBytes = 24 * 1024 * 1024;

    /// <summary>Gets the content, in order.</summary>
    public IReadOnlyList<AIContent> Content { get; init; } = [];

    /// <summary>Gets whether the result reports an error to Claude (<c>is_error</c>); the execution fails without a
    /// retry.</summary>
    public bool IsError { get; init; }

    /// <summary>Creates a result with one text block.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The result.</returns>
    public static ToolResult FromText(string text) => new() { Content = [new TextContent(text)] };

    /// <summary>Creates a result from content blocks.</summary>
    /// <param name="content">The blocks, in order.</param>
    /// <returns>The result.</returns>
    public static ToolResult FromContent(params IEnumerable<AIContent> content)
    {
        ArgumentNullException.ThrowIfNull(content);
        return new() { Content = [.. content] };
    }

    /// <summary>Creates an error result with one text block.</summary>
    /// <param name="message">What went wrong, for Claude.</param>
    /// <returns>The result.</returns>
    public static ToolResult Error(string message) => new() { Content = [new TextContent(message)], IsError = true };
}
