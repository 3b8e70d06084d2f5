using System.Text.Json.Nodes;
using AgentPg.Storage;

namespace AgentPg.Claude;

/// <summary>A block as Claude sent it → the columns of agentpg_content_blocks (raw keeps the whole block).</summary>
internal static class BlockMapping
{
    private static readonly HashSet<string> s_dbTypes =
    [
        "text", "tool_use", "tool_result", "image", "document", "thinking", "server_tool_use", "web_search_result",
        "redacted_thinking", "web_search_tool_result", "web_fetch_tool_result", "code_execution_tool_result",
        "bash_code_execution_tool_result", "text_editor_code_execution_tool_result", "tool_search_tool_result",
        "mcp_tool_use", "mcp_tool_result", "container_upload", "search_result",
    ];

    public static StoredBlock ToStored(JsonObject block)
    {
        var type = (string?)block["type"] ?? "other";
        var isToolCall = type is "tool_use" or "server_tool_use" or "mcp_tool_use";
        var isToolResult = type.EndsWith("_tool_result", StringComparison.Ordinal) || type == "mcp_tool_result";
        return new StoredBlock
        {
            DbType = s_dbTypes.Contains(type) ? type : "other",
            Text = type switch
            {
                "text" => (string?)block["text"],
                "thinking" => (string?)block["thinking"],
                _ => null,
            },
            Signature = type == "thinking" ? (string?)block["signature"] : null,
            ToolUseId = isToolCall ? (string?)block["id"] : null,
            ToolName = isToolCall ? (string?)block["name"] : null,
            ToolInputJson = isToolCall ? (block["input"]?.ToJsonString() ?? "{}") : null,
            ToolResultForUseId = isToolResult ? (string?)block["tool_use_id"] : null,
            IsError = isToolResult && block["is_error"] is JsonValue v && v.TryGetValue(out bool isError) && isError,
            SourceJson = type is "image" or "document" ? block["source"]?.ToJsonString() : null,
            SearchResultsJson = isToolResult ? block["content"]?.ToJsonString() : null,
            RawJson = block.ToJsonString(),
        };
    }
}
