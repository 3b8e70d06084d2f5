using System.Text.Json;

namespace AgentPg;

/// <summary>One result of a web search (<see cref="ContentBlock.WebSearchResults"/>, a <c>web_search_result</c>).</summary>
/// <remarks>The page's content is not readable: Claude sends it encrypted (<c>encrypted_content</c>, kept in
/// <see cref="ContentBlock.Raw"/> and sent back so Claude can cite it later).</remarks>
public sealed record WebSearchResult
{
    /// <summary>Gets the page's URL.</summary>
    public required string Url { get; init; }

    /// <summary>Gets the page's title.</summary>
    public string? Title { get; init; }

    /// <summary>Gets how old the page is, as the search reports it (free text, for example <c>April 30, 2025</c>); null when
    /// unknown.</summary>
    public string? PageAge { get; init; }
}

/// <summary>A page Claude fetched with the web fetch tool (<see cref="ContentBlock.WebFetchResult"/>, a
/// <c>web_fetch_result</c>).</summary>
public sealed record WebFetchResult
{
    /// <summary>Gets the URL fetched.</summary>
    public required string Url { get; init; }

    /// <summary>Gets when Claude fetched it (<c>retrieved_at</c>); null when absent or not a timestamp.</summary>
    public DateTimeOffset? RetrievedAt { get; init; }

    /// <summary>Gets the page's title (the document's <c>title</c>).</summary>
    public string? Title { get; init; }

    /// <summary>Gets the page's text, for a page fetched as plain text; null for a PDF (read <see cref="Document"/>).</summary>
    public string? Text { get; init; }

    /// <summary>Gets the fetched page as a <c>document</c> block, as Claude sent it.</summary>
    public JsonElement? Document { get; init; }
}

/// <summary>What code Claude ran with the code execution tool printed and returned (<see cref="ContentBlock.CodeExecutionResult"/>:
/// a <c>code_execution_result</c> or <c>bash_code_execution_result</c>).</summary>
public sealed record CodeExecutionResult
{
    /// <summary>Gets the standard output.</summary>
    public string Stdout { get; init; } = "";

    /// <summary>Gets the standard error.</summary>
    public string Stderr { get; init; } = "";

    /// <summary>Gets the exit code (0 for success).</summary>
    public int ReturnCode { get; init; }

    /// <summary>Gets the ids of the files the code wrote, in Anthropic's Files API (download them with it).</summary>
    public IReadOnlyList<string> FileIds { get; init; } = [];
}
