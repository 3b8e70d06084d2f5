namespace AgentPg;

/// <summary>The content block types AgentPg stores (<see cref="ContentBlock.Type"/>).</summary>
/// <remarks>Block types not listed here are stored too: <see cref="ContentBlock.Raw"/> keeps them whole.</remarks>
public static class ContentTypes
{
    /// <summary>Text.</summary>
    public const string Text = "text";

    /// <summary>A call to a client tool.</summary>
    public const string ToolUse = "tool_use";

    /// <summary>The result of a client tool call.</summary>
    public const string ToolResult = "tool_result";

    /// <summary>An image.</summary>
    public const string Image = "image";

    /// <summary>A document.</summary>
    public const string Document = "document";

    /// <summary>Extended thinking, with its signature.</summary>
    public const string Thinking = "thinking";

    /// <summary>Extended thinking Claude returned encrypted.</summary>
    public const string RedactedThinking = "redacted_thinking";

    /// <summary>A call to a server tool (for example web search).</summary>
    public const string ServerToolUse = "server_tool_use";

    /// <summary>The result of a web search server tool call.</summary>
    public const string WebSearchToolResult = "web_search_tool_result";

    /// <summary>A web search result (reference name).</summary>
    public const string WebSearchResult = "web_search_result";
}
