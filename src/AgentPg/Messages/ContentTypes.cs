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

    /// <summary>The result of a web fetch server tool call.</summary>
    public const string WebFetchToolResult = "web_fetch_tool_result";

    /// <summary>The result of a code execution server tool call (<c>code_execution_20250522</c>'s Python).</summary>
    public const string CodeExecutionToolResult = "code_execution_tool_result";

    /// <summary>The result of a bash command of the code execution server tool (<c>code_execution_20250825</c>).</summary>
    public const string BashCodeExecutionToolResult = "bash_code_execution_tool_result";

    /// <summary>The result of a file operation of the code execution server tool (<c>code_execution_20250825</c>).</summary>
    public const string TextEditorCodeExecutionToolResult = "text_editor_code_execution_tool_result";

    /// <summary>The result of a tool search server tool call: the deferred tools it found.</summary>
    public const string ToolSearchToolResult = "tool_search_tool_result";

    /// <summary>A web search result (reference name).</summary>
    public const string WebSearchResult = "web_search_result";
}
