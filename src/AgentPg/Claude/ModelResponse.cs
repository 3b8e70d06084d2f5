using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.Claude;

/// <summary>One answer from Claude, aggregated from the stream with every block kept as Claude sent it.</summary>
internal sealed class ModelResponse
{
    public string? MessageId { get; set; }

    public string? Model { get; set; }

    public List<JsonObject> Blocks { get; } = [];

    /// <summary>Indexes of tool_use blocks whose input JSON was cut off (max_tokens in the middle of a tool call).</summary>
    public HashSet<int> TruncatedToolUses { get; } = [];

    public string? StopReason { get; set; }

    public string? StopSequence { get; set; }

    public Usage Usage { get; set; } = Usage.Zero;

    public bool Completed { get; set; }

    public string Text => string.Concat(Blocks.Where(b => (string?)b["type"] == "text").Select(b => (string?)b["text"] ?? ""));

    /// <summary>A complete (non-streamed) message, as the Message Batches API returns it.</summary>
    /// <remarks>Without a stream there is no partial JSON to detect a cut-off tool call: a tool_use that is the last block of a
    /// max_tokens answer is treated as truncated.</remarks>
    public static ModelResponse FromMessage(JsonElement message)
    {
        var response = new ModelResponse
        {
            MessageId = message.TryGetProperty("id", out var id) ? id.GetString() : null,
            Model = message.TryGetProperty("model", out var model) ? model.GetString() : null,
            StopReason = message.TryGetProperty("stop_reason", out var sr) && sr.ValueKind == JsonValueKind.String ? sr.GetString() : null,
            StopSequence = message.TryGetProperty("stop_sequence", out var ss) && ss.ValueKind == JsonValueKind.String ? ss.GetString() : null,
            Completed = true,
        };
        if (message.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.Array)
        {
            foreach (var block in content.EnumerateArray())
            {
                response.Blocks.Add(JsonNode.Parse(block.GetRawText())!.AsObject());
            }
        }

        if (message.TryGetProperty("usage", out var usage))
        {
            response.Usage = new Usage
            {
                InputTokens = Get(usage, "input_tokens"),
                OutputTokens = Get(usage, "output_tokens"),
                CacheCreationInputTokens = Get(usage, "cache_creation_input_tokens"),
                CacheReadInputTokens = Get(usage, "cache_read_input_tokens"),
            };
        }

        if (response.StopReason == Runs.StopReasons.MaxTokens && response.Blocks.Count > 0 && (string?)response.Blocks[^1]["type"] == "tool_use")
        {
            response.TruncatedToolUses.Add(response.Blocks.Count - 1);
        }

        return response;

        static long Get(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : 0;
    }

    /// <summary>The answer as the Messages API would return it without streaming.</summary>
    public JsonElement ToMessageJson()
    {
        var content = new JsonArray();
        foreach (var block in Blocks)
        {
            content.Add(block.DeepClone());
        }

        var message = new JsonObject
        {
            ["id"] = MessageId,
            ["type"] = "message",
            ["role"] = "assistant",
            ["model"] = Model,
            ["content"] = content,
            ["stop_reason"] = StopReason,
            ["stop_sequence"] = StopSequence,
            ["usage"] = new JsonObject
            {
                ["input_tokens"] = Usage.InputTokens,
                ["output_tokens"] = Usage.OutputTokens,
                ["cache_creation_input_tokens"] = Usage.CacheCreationInputTokens,
                ["cache_read_input_tokens"] = Usage.CacheReadInputTokens,
            },
        };
        return JsonSerializer.SerializeToElement(message);
    }

    public IEnumerable<(int Index, JsonObject Block)> CompleteToolUses()
        => Blocks.Select((b, i) => (i, b)).Where(x => (string?)x.b["type"] == "tool_use" && !TruncatedToolUses.Contains(x.i));
}
