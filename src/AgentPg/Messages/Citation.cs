using System.Text.Json;

namespace AgentPg;

/// <summary>A passage a text block cites (<see cref="ContentBlock.Citations"/>): a web page Claude found with web search, or a
/// part of a document (a document of the conversation, a page Claude fetched with citations on, a search result).</summary>
/// <remarks>The fields are read from <see cref="Raw"/>, the citation as Claude sent it, which is what later requests send
/// back (with its opaque <c>encrypted_index</c>); a citation of a type this version does not know has its
/// <see cref="Type"/> and <see cref="Raw"/>, and <see cref="CitedText"/> when it has one.</remarks>
public sealed record Citation
{
    /// <summary>Gets the citation type: <c>web_search_result_location</c> (a web search result), <c>char_location</c> (characters
    /// of a plain-text document), <c>page_location</c> (pages of a PDF), <c>content_block_location</c> (blocks of a document
    /// with content blocks), <c>search_result_location</c> (blocks of a search result a tool returned), or a newer type.</summary>
    public required string Type { get; init; }

    /// <summary>Gets the passage cited (<c>cited_text</c>).</summary>
    public string? CitedText { get; init; }

    /// <summary>Gets the cited page's URL (<c>url</c>) for a web search result, or the search result's <c>source</c>.</summary>
    public string? Url { get; init; }

    /// <summary>Gets the title of the web page or search result (<c>title</c>), or of the document
    /// (<c>document_title</c>); null when the source has none.</summary>
    public string? Title { get; init; }

    /// <summary>Gets the index of the cited document among the documents of the request (<c>document_index</c>), or of the
    /// search result (<c>search_result_index</c>); null for a web search result.</summary>
    public int? DocumentIndex { get; init; }

    /// <summary>Gets where the passage starts in the document: a character index (0-based) for <c>char_location</c>, a page
    /// number (1-based) for <c>page_location</c>, a block index (0-based) for <c>content_block_location</c> and
    /// <c>search_result_location</c>; null for a web search result.</summary>
    public int? Start { get; init; }

    /// <summary>Gets where the passage ends in the document (exclusive), in the unit of <see cref="Start"/>.</summary>
    public int? End { get; init; }

    /// <summary>Gets the citation in Claude's wire format, exactly as Claude sent it.</summary>
    public JsonElement Raw { get; init; }
}
