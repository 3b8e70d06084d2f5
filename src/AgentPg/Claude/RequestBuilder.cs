using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.Claude;

/// <summary>Builds the Messages API body for one iteration from the stored conversation.</summary>
internal static class RequestBuilder
{
    public const int DefaultMaxTokens = 4096;

    public static readonly JsonObject DelegateInputSchema = new()
    {
        ["type"] = "object",
        ["properties"] = new JsonObject
        {
            ["task"] = new JsonObject { ["type"] = "string", ["description"] = "The task to delegate to this agent" },
        },
        ["required"] = new JsonArray("task"),
    };

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
    public static JsonArray Messages(IReadOnlyList<Message> history)
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
            // The API rejects empty text blocks; a stream can produce one.
            return (string?)node["type"] == "text" && string.IsNullOrEmpty((string?)node["text"]) ? null : node;
        }

        switch (block.Type)
        {
            case ContentTypes.Text:
                return string.IsNullOrEmpty(block.Text) ? null : new JsonObject { ["type"] = "text", ["text"] = block.Text };
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

    public static Dictionary<string, JsonElement> Body(
        AgentDefinition agent, int maxTokens, string? system, JsonArray messages, JsonArray tools)
    {
        var body = new Dictionary<string, JsonElement>(StringComparer.Ordinal)
        {
            ["model"] = JsonSerializer.SerializeToElement(agent.Model),
            ["max_tokens"] = JsonSerializer.SerializeToElement(maxTokens),
            ["messages"] = ToElement(messages),
        };
        if (!string.IsNullOrEmpty(system))
        {
            body["system"] = JsonSerializer.SerializeToElement(system);
        }

        if (tools.Count > 0)
        {
            body["tools"] = ToElement(tools);
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

    public static JsonObject ToolDefinition(string name, string description, JsonObject inputSchema)
        => new() { ["name"] = name, ["description"] = description, ["input_schema"] = inputSchema };

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
