using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.Claude;

/// <summary>Builds the Messages API body for one iteration from the stored conversation.</summary>
internal static class RequestBuilder
{
    public const int DefaultMaxTokens = 4096;

    /// <summary>The system prompt: the run's override wins; otherwise the agent's prompt plus the run's addition.</summary>
    public static string? SystemPrompt(AgentDefinition agent, string? overrideInstructions, string? appendInstructions)
    {
        if (!string.IsNullOrEmpty(overrideInstructions))
        {
            return overrideInstructions;
        }

        if (string.IsNullOrEmpty(appendInstructions))
        {
            return string.IsNullOrEmpty(agent.SystemPrompt) ? null : agent.SystemPrompt;
        }

        return string.IsNullOrEmpty(agent.SystemPrompt) ? appendInstructions : agent.SystemPrompt + "\n\n" + appendInstructions;
    }

    /// <summary>Stored messages → API messages: blocks Claude sent go back verbatim, consecutive same-role messages are
    /// merged (the API requires alternation), empty messages are skipped, system messages are sent as user turns.</summary>
    /// <remarks>The API refuses two things Claude itself can produce: a text block of whitespace only (Claude sometimes
    /// writes <c>"\n\n"</c> before a tool call), which is left out, and a final assistant message (the paused turn a
    /// <c>pause_turn</c> continuation sends back) whose text ends with whitespace, which is trimmed.</remarks>
    public static JsonArray Messages(IReadOnlyList<Message> history)
    {
        var result = MergedMessages(history);
        if (result.Count > 0 && result[^1] is JsonObject { } final && (string?)final["role"] == "assistant")
        {
            var content = final["content"]!.AsArray();
            if (content[^1] is JsonObject { } lastBlock && (string?)lastBlock["type"] == "text")
            {
                var trimmed = ((string?)lastBlock["text"] ?? "").TrimEnd();
                if (trimmed.Length > 0)
                {
                    lastBlock["text"] = trimmed;
                }
                else
                {
                    content.RemoveAt(content.Count - 1);
                    if (content.Count == 0)
                    {
                        result.RemoveAt(result.Count - 1);
                    }
                }
            }
        }

        return result;
    }

    private static JsonArray MergedMessages(IReadOnlyList<Message> history)
    {
        var result = new JsonArray();
        JsonObject? last = null;
        foreach (var message in history)
        {
            var blocks = new JsonArray();
            foreach (var block in message.Content)
            {
                if (ToApiBlock(block) is { } apiBlock)
                {
                    blocks.Add(apiBlock);
                }
            }

            if (blocks.Count == 0)
            {
                continue;
            }

            var role = message.Role == MessageRole.Assistant ? "assistant" : "user";
            if (last is not null && (string?)last["role"] == role)
            {
                var content = last["content"]!.AsArray();
                foreach (var b in blocks.ToList())
                {
                    blocks.Remove(b);
                    content.Add(b);
                }

                continue;
            }

            last = new JsonObject { ["role"] = role, ["content"] = blocks };
            result.Add(last);
        }

        return result;
    }

    public static JsonObject? ToApiBlock(ContentBlock block)
    {
        if (block.Raw is { ValueKind: JsonValueKind.Object } raw)
        {
            var node = JsonNode.Parse(raw.GetRawText())!.AsObject();
            // The API rejects empty and whitespace-only text blocks; Claude's answer can hold one.
            return (string?)node["type"] == "text" && string.IsNullOrWhiteSpace((string?)node["text"]) ? null : node;
        }

        switch (block.Type)
        {
            case ContentTypes.Text:
                return string.IsNullOrWhiteSpace(block.Text) ? null : new JsonObject { ["type"] = "text", ["text"] = block.Text };
            case ContentTypes.ToolUse:
                return new JsonObject
                {
                    ["type"] = "tool_use",
                    ["id"] = block.ToolUseId,
                    ["name"] = block.ToolName,
                    ["input"] = block.ToolInput is { } input ? JsonNode.Parse(input.GetRawText()) : new JsonObject(),
                };
            case ContentTypes.ToolResult:
                var result = new JsonObject { ["type"] = "tool_result", ["tool_use_id"] = block.ToolResultForUseId };
                if (!string.IsNullOrEmpty(block.ToolContent))
                {
                    result["content"] = block.ToolContent;
                }

                if (block.IsError)
                {
                    result["is_error"] = true;
                }

                return result;
            case ContentTypes.Thinking:
                return new JsonObject { ["type"] = "thinking", ["thinking"] = block.Text ?? "", ["signature"] = block.Signature ?? "" };
            case ContentTypes.Image:
            case ContentTypes.Document:
                return block.Source is { } source
                    ? new JsonObject { ["type"] = block.Type, ["source"] = JsonNode.Parse(source.GetRawText()) }
                    : null;
            default:
                return null;
        }
    }

    /// <summary>The request body. With <paramref name="cacheTtl"/> ("5m" or "1h") the body carries prompt-cache breakpoints
    /// (see <see cref="PromptCacheBreakpoints"/>); <paramref name="contextManagement"/> is the agent's Claude
    /// <c>context_management</c> value, sent as is; <paramref name="outputSchema"/> the schema of the answer (structured
    /// outputs), sent as <c>output_config.format</c>.</summary>
    public static Dictionary<string, JsonElement> Body(
        AgentDefinition agent, int maxTokens, string? system, JsonArray messages, JsonArray tools,
        string? cacheTtl = null, JsonElement? contextManagement = null, JsonElement? outputSchema = null)
    {
        JsonNode? systemNode = string.IsNullOrEmpty(system) ? null : JsonValue.Create(system);
        if (cacheTtl is not null)
        {
            (systemNode, tools) = PromptCacheBreakpoints.Apply(systemNode, tools, messages, cacheTtl);
        }

        var body = new Dictionary<string, JsonElement>(StringComparer.Ordinal)
        {
            ["model"] = JsonSerializer.SerializeToElement(agent.Model),
            ["max_tokens"] = JsonSerializer.SerializeToElement(maxTokens),
            ["messages"] = ToElement(messages),
        };
        if (systemNode is not null)
        {
            body["system"] = ToElement(systemNode);
        }

        if (tools.Count > 0)
        {
            body["tools"] = ToElement(tools);
        }

        if (contextManagement is { } management)
        {
            body["context_management"] = management;
        }

        // The agent's thinking and effort (AgentDefinition.Thinking, Effort), on every model call of its runs.
        if (agent.Thinking is { } thinking)
        {
            body["thinking"] = JsonElement.Parse(thinking.ToJson());
        }

        // output_config: the agent's effort and the answer's schema (structured outputs).
        var outputConfig = new JsonObject();
        if (agent.Effort is { } effort)
        {
            outputConfig["effort"] = AgentEfforts.ToWire(effort);
        }

        if (outputSchema is { } schema)
        {
            outputConfig["format"] = new JsonObject { ["type"] = "json_schema", ["schema"] = JsonNode.Parse(schema.GetRawText()) };
        }

        if (outputConfig.Count > 0)
        {
            body["output_config"] = JsonSerializer.SerializeToElement(outputConfig);
        }

        // SDK 13.12 has no typed sampling parameters: they go in the raw body.
        if (agent.Temperature is { } temperature)
        {
            body["temperature"] = JsonSerializer.SerializeToElement(Math.Round(temperature, 6));
        }

        if (agent.TopK is { } topK)
        {
            body["top_k"] = JsonSerializer.SerializeToElement(topK);
        }

        if (agent.TopP is { } topP)
        {
            body["top_p"] = JsonSerializer.SerializeToElement(Math.Round(topP, 6));
        }

        return body;
    }

    /// <summary>The beta that <c>context_management</c> needs.</summary>
    public const string ContextManagementBeta = "context-management-2025-06-27";

    /// <summary>The agent's Claude <c>context_management</c> (context editing), from <c>Config["context_management"]</c>, as JSON.</summary>
    public static JsonElement? ContextManagement(AgentDefinition agent)
        => agent.Config.TryGetValue(ContextManagementKey, out var value) && value is not null ? JsonSerializer.SerializeToElement(value) : null;

    /// <summary>The key of an agent's <see cref="AgentDefinition.Config"/> whose value is sent as Claude's <c>context_management</c>.</summary>
    public const string ContextManagementKey = "context_management";

    /// <summary>The anthropic-beta header for a request: the 1M-token window, context management and the betas the agent's
    /// server tools need (<see cref="ServerTool.Beta"/>), as needed, each once.</summary>
    public static IReadOnlyDictionary<string, JsonElement> BetaHeaders(bool extendedContext, bool contextManagement, IReadOnlyList<ServerTool>? serverTools = null)
    {
        var betas = new List<string>();
        if (extendedContext)
        {
            betas.Add(ExtendedContextBeta);
        }

        if (contextManagement)
        {
            betas.Add(ContextManagementBeta);
        }

        foreach (var tool in serverTools ?? [])
        {
            if (tool.Beta is { } beta && !betas.Contains(beta, StringComparer.Ordinal))
            {
                betas.Add(beta);
            }
        }

        return betas.Count == 0
            ? s_noHeaders
            : new Dictionary<string, JsonElement> { ["anthropic-beta"] = JsonSerializer.SerializeToElement(string.Join(",", betas)) };
    }

    /// <summary>The beta that opens Claude's 1M-token context window.</summary>
    public const string ExtendedContextBeta = "context-1m-2025-08-07";

    private static readonly IReadOnlyDictionary<string, JsonElement> s_noHeaders = new Dictionary<string, JsonElement>();

    public static JsonObject ToolDefinition(string name, string description, JsonObject inputSchema)
        => new() { ["name"] = name, ["description"] = description, ["input_schema"] = inputSchema };

    /// <summary>A client tool's definition, with <c>strict</c> and <c>eager_input_streaming</c> when the tool asks for them
    /// (the latter only in a streaming request).</summary>
    public static JsonObject ToolDefinition(ITool tool, bool streaming)
    {
        var definition = ToolDefinition(tool.Name, tool.Description, tool.InputSchema.ToJsonObject());
        if (tool.Strict)
        {
            definition["strict"] = true;
        }

        if (streaming && tool.EagerInputStreaming)
        {
            definition["eager_input_streaming"] = true;
        }

        return definition;
    }

    /// <summary>The largest max_tokens a model accepts, for doubling after a truncated tool call.</summary>
    public static int ModelMaxOutputTokens(string model)
    {
        var m = model.ToLowerInvariant();
        if (m.StartsWith("claude-3-5", StringComparison.Ordinal) || m.StartsWith("claude-3.5", StringComparison.Ordinal))
        {
            return 8192;
        }

        if (m.StartsWith("claude-3", StringComparison.Ordinal))
        {
            return 4096;
        }

        if (m.Contains("opus-4-0", StringComparison.Ordinal) || m.Contains("opus-4-1", StringComparison.Ordinal) || m.Contains("opus-4-2025", StringComparison.Ordinal))
        {
            return 32000;
        }

        return 64000;
    }

    private static JsonElement ToElement(JsonNode node) => JsonSerializer.SerializeToElement(node);
}
