using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Internal;

namespace AgentPg.Claude;

/// <summary>Builds a <see cref="ModelResponse"/> from raw SSE events (their JSON), the way the API would have returned the
/// message without streaming. Unknown event and delta types are ignored, as the SDK does.</summary>
internal sealed class StreamAggregator
{
    private readonly ModelResponse _response = new();
    private readonly Dictionary<int, StringBuilder> _partialJson = [];
    private readonly Dictionary<int, int> _blockPositions = [];

    /// <summary>Called with each text delta as it arrives.</summary>
    public Action<string>? OnText { get; init; }

    /// <summary>Called for every event that shows Claude is producing the message: message start and delta, block starts
    /// and stops, and every kind of content delta (text, thinking, signature, tool input, citations). Pings are not
    /// progress: they only show that the connection is open.</summary>
    public Action? OnProgress { get; init; }
    /// <summary>Called with each text, thinking or tool-input delta after it was applied: the response, the block's position in
    /// it, what the delta is, and the delta.</summary>
    public Action<ModelResponse, int, StreamedDelta, string>? OnDelta { get; init; }

    public ModelResponse Response => _response;

    public void Add(JsonElement ev)
    {
        var type = ev.TryGetProperty("type", out var t) ? t.GetString() : null;
        if (type is "message_start" or "content_block_start" or "content_block_delta" or "content_block_stop" or "message_delta")
        {
            OnProgress?.Invoke();
        }

        switch (type)
        {
            case "message_start":
                var message = ev.GetProperty("message");
                _response.MessageId = message.TryGetProperty("id", out var id) ? id.GetString() : null;
                _response.Model = message.TryGetProperty("model", out var model) ? model.GetString() : null;
                if (message.TryGetProperty("usage", out var startUsage))
                {
                    _response.Usage = MergeUsage(_response.Usage, startUsage);
                }

                break;

            case "content_block_start":
                var index = ev.GetProperty("index").GetInt32();
                var block = JsonNode.Parse(Nul.ReplaceUnpairedSurrogates(ev.GetProperty("content_block").GetRawText()))!.AsObject();
                _blockPositions[index] = _response.Blocks.Count;
                _response.Blocks.Add(block);
                if ((string?)block["type"] is "tool_use" or "server_tool_use" or "mcp_tool_use")
                {
                    var json = new StringBuilder();
                    _partialJson[index] = json;
                    _response.SetPartialInput(_response.Blocks.Count - 1, json);
                }

                break;

            case "content_block_delta":
                ApplyDelta(ev.GetProperty("index").GetInt32(), ev.GetProperty("delta"));
                break;

            case "content_block_stop":
                var stopped = ev.GetProperty("index").GetInt32();
                FinishBlock(stopped);
                if (_blockPositions.TryGetValue(stopped, out var stoppedPosition))
                {
                    _response.EndStreamedText(stoppedPosition);
                }

                break;

            case "message_delta":
                if (ev.TryGetProperty("delta", out var delta))
                {
                    if (delta.TryGetProperty("stop_reason", out var sr) && sr.ValueKind == JsonValueKind.String)
                    {
                        _response.StopReason = sr.GetString();
                    }

                    if (delta.TryGetProperty("stop_sequence", out var ss) && ss.ValueKind == JsonValueKind.String)
                    {
                        _response.StopSequence = ss.GetString();
                    }
                }

                if (ev.TryGetProperty("usage", out var deltaUsage))
                {
                    _response.Usage = MergeUsage(_response.Usage, deltaUsage);
                }

                break;

            case "message_stop":
                // Blocks left open (no content_block_stop) are finished as they are.
                foreach (var open in _partialJson.Keys.ToList())
                {
                    FinishBlock(open);
                }

                _response.EndStreamedText();
                _response.Completed = true;
                break;
        }
    }

    private void ApplyDelta(int index, JsonElement delta)
    {
        if (!_blockPositions.TryGetValue(index, out var position))
        {
            return;
        }

        var block = _response.Blocks[position];
        switch (delta.TryGetProperty("type", out var t) ? t.GetString() : null)
        {
            case "text_delta":
                var text = Unescaped(delta.GetProperty("text"));
                _response.AppendStreamedText(position, "text", text);
                OnText?.Invoke(text);
                OnDelta?.Invoke(_response, position, StreamedDelta.Text, text);
                break;
            case "input_json_delta":
                if (_partialJson.TryGetValue(index, out var sb))
                {
                    var partial = Unescaped(delta.GetProperty("partial_json"));
                    sb.Append(partial);
                    OnDelta?.Invoke(_response, position, StreamedDelta.ToolInput, partial);
                }

                break;
            case "thinking_delta":
                var thinking = Unescaped(delta.GetProperty("thinking"));
                _response.AppendStreamedText(position, "thinking", thinking);
                OnDelta?.Invoke(_response, position, StreamedDelta.Thinking, thinking);
                break;
            case "signature_delta":
                block["signature"] = delta.GetProperty("signature").GetString();
                break;
            case "citations_delta":
                if (block["citations"] is not JsonArray citations)
                {
                    citations = [];
                    block["citations"] = citations;
                }

                citations.Add(JsonNode.Parse(Nul.ReplaceUnpairedSurrogates(delta.GetProperty("citation").GetRawText())));
                break;
        }
    }

    private void FinishBlock(int index)
    {
        if (!_partialJson.Remove(index, out var sb) || !_blockPositions.TryGetValue(index, out var position))
        {
            return;
        }

        _response.SetPartialInput(position, null);
        var block = _response.Blocks[position];
        var json = sb.ToString();
        if (json.Length == 0)
        {
            // No input deltas: the input of content_block_start ({} for a tool without parameters) stands.
            return;
        }

        try
        {
            block["input"] = JsonNode.Parse(Nul.ReplaceUnpairedSurrogates(json));
        }
        catch (JsonException)
        {
            // Cut off mid-object (max_tokens): never executed, the iteration is repeated with more room. Or not JSON in an answer
            // that ends normally (fine-grained tool streaming): answered with an error (IterationRecorder).
            _response.TruncatedToolUses.Add(position);
            _response.UnparsedToolInputs[position] = json;
        }
    }

    // A delta's string; an escaped unpaired surrogate, which System.Text.Json refuses to read, becomes U+FFFD (Nul).
    private static string Unescaped(JsonElement value)
    {
        try
        {
            return value.GetString() ?? "";
        }
        catch (InvalidOperationException) when (value.ValueKind == JsonValueKind.String)
        {
            using var repaired = JsonDocument.Parse(Nul.ReplaceUnpairedSurrogates(value.GetRawText()));
            return repaired.RootElement.GetString() ?? "";
        }
    }

    private static Usage MergeUsage(Usage current, JsonElement usage) => new()
    {
        InputTokens = Get(usage, "input_tokens") ?? current.InputTokens,
        OutputTokens = Get(usage, "output_tokens") ?? current.OutputTokens,
        CacheCreationInputTokens = Get(usage, "cache_creation_input_tokens") ?? current.CacheCreationInputTokens,
        CacheReadInputTokens = Get(usage, "cache_read_input_tokens") ?? current.CacheReadInputTokens,
        // message_start carries the split by lifetime; message_delta does not repeat it.
        CacheCreation1hInputTokens = (usage.TryGetProperty("cache_creation", out var creation) && creation.ValueKind == JsonValueKind.Object
            ? Get(creation, "ephemeral_1h_input_tokens") : null) ?? current.CacheCreation1hInputTokens,
        // Cumulative, like the token counts: a later event's count replaces the earlier one.
        WebSearchRequests = ServerToolUse(usage, "web_search_requests") ?? current.WebSearchRequests,
        WebFetchRequests = ServerToolUse(usage, "web_fetch_requests") ?? current.WebFetchRequests,
    };

    /// <summary>A count of <c>usage.server_tool_use</c>.</summary>
    internal static long? ServerToolUse(JsonElement usage, string name)
        => usage.TryGetProperty("server_tool_use", out var uses) && uses.ValueKind == JsonValueKind.Object ? Get(uses, name) : null;

    private static long? Get(JsonElement e, string name)
        => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetInt64() : null;
}

/// <summary>What a streamed delta adds to its block.</summary>
internal enum StreamedDelta
{
    /// <summary>Text of a text block.</summary>
    Text,

    /// <summary>Thinking of a thinking block.</summary>
    Thinking,

    /// <summary>A piece of a tool call's input JSON (<c>input_json_delta</c>).</summary>
    ToolInput,
}
