using System.Text;
using System.Text.Json;
using Microsoft.Extensions.AI;

namespace AgentPg.Chat;

/// <summary>Claude's server-tool blocks and citations as Microsoft.Extensions.AI content: web search and code execution as its
/// hosted-tool contents, other server tools as informational function contents, citations as <see cref="CitationAnnotation"/>s.
/// Every content keeps the block (or citation) as Claude sent it in <see cref="AIContent.RawRepresentation"/>.</summary>
internal static class ServerToolContent
{
    /// <summary>The content of a server tool's call or result block; null for any other block.</summary>
    public static AIContent? From(ContentBlock block)
    {
        if (block.Type == ContentTypes.ServerToolUse && block.ToolUseId is { } callId)
        {
            var input = block.ToolInput is { ValueKind: JsonValueKind.Object } i ? i : default;
            return block.ToolName switch
            {
                "web_search" => new WebSearchToolCallContent(callId)
                {
                    Queries = String(input, "query") is { } query ? [query] : null,
                    RawRepresentation = block.Raw,
                },
                // code_execution_20250522 runs Python; code_execution_20250825 runs bash commands and edits files.
                "code_execution" or "bash_code_execution" or "text_editor_code_execution" => new CodeInterpreterToolCallContent(callId)
                {
                    Inputs = (String(input, "code"), String(input, "command")) switch
                    {
                        ({ } python, _) => [new DataContent(Encoding.UTF8.GetBytes(python), "text/x-python")],
                        (null, { } command) when block.ToolName == "bash_code_execution" => [new DataContent(Encoding.UTF8.GetBytes(command), "text/x-shellscript")],
                        _ => null,
                    },
                    RawRepresentation = block.Raw,
                },
                _ => new FunctionCallContent(callId, block.ToolName ?? "", Arguments(input))
                {
                    // Claude ran it: nothing for the caller to invoke.
                    InformationalOnly = true,
                    RawRepresentation = block.Raw,
                },
            };
        }

        if (block.ToolResultForUseId is not { } resultFor || block.Type is ContentTypes.ToolResult or ContentTypes.ToolUse or ContentTypes.ServerToolUse
            || !block.Type.EndsWith("_tool_result", StringComparison.Ordinal) || block.Type == "mcp_tool_result")
        {
            return null;
        }

        IList<AIContent>? error = block.ServerToolErrorCode is { } code ? [new ErrorContent($"The server tool failed: {code}.") { ErrorCode = code }] : null;
        if (block.Type == ContentTypes.WebSearchToolResult)
        {
            return new WebSearchToolResultContent(resultFor)
            {
                Outputs = error ?? [.. block.WebSearchResults.Select(Page)],
                RawRepresentation = block.Raw,
            };
        }

        if (block.Type is ContentTypes.CodeExecutionToolResult or ContentTypes.BashCodeExecutionToolResult or ContentTypes.TextEditorCodeExecutionToolResult)
        {
            return new CodeInterpreterToolResultContent(resultFor)
            {
                Outputs = error ?? (block.CodeExecutionResult is { } run ? Outputs(run) : null),
                RawRepresentation = block.Raw,
            };
        }

        // Web fetch, tool search and newer tools: their result as Claude sent it.
        return new FunctionResultContent(resultFor, block.Raw is { } raw && raw.TryGetProperty("content", out var content) ? content : null)
        {
            RawRepresentation = block.Raw,
        };
    }

    /// <summary>A citation of a text block.</summary>
    public static AIAnnotation Annotation(Citation citation) => new CitationAnnotation
    {
        Title = citation.Title,
        Url = Uri.TryCreate(citation.Url, UriKind.Absolute, out var url) ? url : null,
        Snippet = citation.CitedText,
        ToolName = citation.Type == "web_search_result_location" ? "web_search" : null,
        RawRepresentation = citation.Raw,
    };

    private static UriContent Page(WebSearchResult result)
    {
        var page = new UriContent(new Uri(result.Url), "text/html");
        if (result.Title is not null || result.PageAge is not null)
        {
            page.AdditionalProperties = new() { ["title"] = result.Title, ["page_age"] = result.PageAge };
        }

        return page;
    }

    private static List<AIContent> Outputs(CodeExecutionResult run)
    {
        var outputs = new List<AIContent>();
        if (run.Stdout.Length > 0)
        {
            outputs.Add(new TextContent(run.Stdout));
        }

        if (run.Stderr.Length > 0 || run.ReturnCode != 0)
        {
            outputs.Add(new ErrorContent(run.Stderr) { ErrorCode = run.ReturnCode.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        }

        outputs.AddRange(run.FileIds.Select(id => new HostedFileContent(id)));
        return outputs;
    }

    private static string? String(JsonElement input, string name)
        => input.ValueKind == JsonValueKind.Object && input.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static Dictionary<string, object?>? Arguments(JsonElement input)
        => input.ValueKind == JsonValueKind.Object ? input.EnumerateObject().ToDictionary(p => p.Name, p => (object?)p.Value.Clone()) : null;
}
