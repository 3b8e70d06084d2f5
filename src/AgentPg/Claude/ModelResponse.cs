using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Internal;

namespace AgentPg.Claude;

/// <summary>One answer from Claude, aggregated from the stream with every block kept as Claude sent it.</summary>
internal sealed class ModelResponse
{
    public string? MessageId { get; set; }

    public string? Model { get; set; }

    public List<JsonObject> Blocks { get; } = [];

    /// <summary>Indexes of tool_use blocks whose input JSON was cut off (max_tokens in the middle of a tool call), or is not
    /// JSON for another reason (fine-grained tool streaming sends a tool's input as Claude writes it, unvalidated).</summary>
    public HashSet<int> TruncatedToolUses { get; } = [];

    /// <summary>The streamed input text of the <see cref="TruncatedToolUses"/> that a stream delivered, by position.</summary>
    public Dictionary<int, string> UnparsedToolInputs { get; } = [];

    /// <summary>Indexes of tool_use blocks whose input was not JSON in an answer that was not cut off: their input is the
    /// text Claude wrote, wrapped as <c>{"INVALID_JSON": text}</c>, and they are answered with an error, never executed.</summary>
    public HashSet<int> InvalidToolInputs { get; } = [];

    /// <summary>The key under which a tool_use's input that is not JSON is kept (the Messages API takes only an object as a
    /// tool_use's input).</summary>
    public const string InvalidJsonKey = "INVALID_JSON";

    /// <summary>Turns the <see cref="TruncatedToolUses"/> of an answer that was not cut off into <see cref="InvalidToolInputs"/>:
    /// each keeps Claude's text as its input, wrapped in an object, so that the turn can be stored, sent back and answered.</summary>
    public void KeepInvalidToolInputs()
    {
        foreach (var index in TruncatedToolUses)
        {
            Blocks[index]["input"] = new JsonObject { [InvalidJsonKey] = UnparsedToolInputs.GetValueOrDefault(index, "") };
            InvalidToolInputs.Add(index);
        }

        TruncatedToolUses.Clear();
    }

    public string? StopReason { get; set; }

    public string? StopSequence { get; set; }

    public Usage Usage { get; set; } = Usage.Zero;

    public bool Completed { get; set; }

    // The text (or thinking) of blocks still streaming that got more than one delta, by position: later deltas are appended
    // here and the block's property is set once, when the block stops, instead of rebuilding the whole string (and its JSON
    // node) for every delta. A block's first delta is set on it directly (a fast model's short answer is one delta).
    private Dictionary<int, (string Property, StringBuilder Text)>? _streamed;

    // The input JSON of tool calls still streaming, by position (the aggregator's own builders): what a watcher who starts in the
    // middle of a tool call gets first.
    private Dictionary<int, StringBuilder>? _partialInputs;

    /// <summary>The input JSON of the tool call at <paramref name="position"/> received so far while it streams; <see langword="null"/>
    /// once the block has stopped (its parsed input is on the block) or for any other block.</summary>
    public string? PartialInput(int position)
        => _partialInputs is not null && _partialInputs.TryGetValue(position, out var json) ? json.ToString() : null;

    /// <summary>Starts (with a builder) or ends (with <see langword="null"/>) the streamed input of a tool call.</summary>
    internal void SetPartialInput(int position, StringBuilder? json)
    {
        if (json is null)
        {
            _partialInputs?.Remove(position);
            return;
        }

        (_partialInputs ??= [])[position] = json;
    }

    /// <summary>The text of a text block (or the thinking of a thinking block) so far, also while it is still streaming.</summary>
    public string? BlockText(int position, string property)
        => _streamed is not null && _streamed.TryGetValue(position, out var open) && open.Property == property
            ? open.Text.ToString()
            : (string?)Blocks[position][property];

    /// <summary>Appends a text or thinking delta to the block at <paramref name="position"/>.</summary>
    internal void AppendStreamedText(int position, string property, string delta)
    {
        if (_streamed is not null && _streamed.TryGetValue(position, out var open) && open.Property == property)
        {
            open.Text.Append(delta);
            return;
        }

        var block = Blocks[position];
        var soFar = (string?)block[property];
        if (string.IsNullOrEmpty(soFar))
        {
            block[property] = delta;
            return;
        }

        _streamed ??= [];
        _streamed[position] = (property, new StringBuilder(soFar, Math.Max(256, 2 * (soFar.Length + delta.Length))).Append(delta));
    }

    /// <summary>Sets the streamed text of the block at <paramref name="position"/> (every streaming block when null) on the block.</summary>
    internal void EndStreamedText(int? position = null)
    {
        if (_streamed is null)
        {
            return;
        }

        foreach (var (at, open) in _streamed.Where(s => position is null || s.Key == position).ToList())
        {
            Blocks[at][open.Property] = open.Text.ToString();
            _streamed.Remove(at);
        }
    }

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
                // Tool inputs are JSON the model wrote: an escaped unpaired surrogate in one becomes U+FFFD (Nul), as when streamed.
                response.Blocks.Add(JsonNode.Parse(Nul.ReplaceUnpairedSurrogates(block.GetRawText()))!.AsObject());
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
                CacheCreation1hInputTokens = usage.TryGetProperty("cache_creation", out var creation) && creation.ValueKind == JsonValueKind.Object
                    ? Get(creation, "ephemeral_1h_input_tokens") : 0,
                WebSearchRequests = StreamAggregator.ServerToolUse(usage, "web_search_requests") ?? 0,
                WebFetchRequests = StreamAggregator.ServerToolUse(usage, "web_fetch_requests") ?? 0,
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
