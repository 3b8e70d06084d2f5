using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.Testing;

/// <summary>Citation objects for <see cref="FakeContentBlock.CitedText"/>, in Claude's wire format.</summary>
public static class FakeCitation
{
    /// <summary>A <c>web_search_result_location</c>: a passage of a web search result, with an opaque
    /// <c>encrypted_index</c> (derived from the URL and the passage).</summary>
    /// <param name="url">The result's URL.</param>
    /// <param name="title">The result's title.</param>
    /// <param name="citedText">The passage cited.</param>
    /// <returns>The citation.</returns>
    public static JsonElement WebSearchResultLocation(string url, string? title, string citedText)
    {
        ArgumentException.ThrowIfNullOrEmpty(url);
        ArgumentNullException.ThrowIfNull(citedText);
        return JsonSerializer.SerializeToElement(new JsonObject
        {
            ["type"] = "web_search_result_location",
            ["cited_text"] = citedText,
            ["url"] = url,
            ["title"] = title,
            ["encrypted_index"] = Convert.ToBase64String(SHA256.HashData(Encoding.UTF8.GetBytes("web_search_result_location:" + url + "\n" + citedText))),
        });
    }

    /// <summary>A <c>char_location</c>: a passage of a plain-text document of the request (or of a page fetched with
    /// citations).</summary>
    /// <param name="documentIndex">The document's index among the request's documents.</param>
    /// <param name="documentTitle">The document's title.</param>
    /// <param name="citedText">The passage cited.</param>
    /// <param name="startCharIndex">The passage's first character (0-based).</param>
    /// <param name="endCharIndex">The character after the passage.</param>
    /// <returns>The citation.</returns>
    public static JsonElement CharLocation(int documentIndex, string? documentTitle, string citedText, int startCharIndex, int endCharIndex)
    {
        ArgumentNullException.ThrowIfNull(citedText);
        return JsonSerializer.SerializeToElement(new JsonObject
        {
            ["type"] = "char_location",
            ["cited_text"] = citedText,
            ["document_index"] = documentIndex,
            ["document_title"] = documentTitle,
            ["start_char_index"] = startCharIndex,
            ["end_char_index"] = endCharIndex,
        });
    }
}
