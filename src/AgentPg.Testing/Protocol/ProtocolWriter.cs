using System.Buffers;
using System.Globalization;
using System.Text;
using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>Writes the Messages API's JSON bodies and SSE events, field by field in the real API's order.</summary>
internal static class ProtocolWriter
{
    private static readonly byte[] s_ping = Encoding.UTF8.GetBytes("event: ping\ndata: {\"type\": \"ping\"}\n\n");

    public static byte[] Json(Action<Utf8JsonWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>(512);
        using (var writer = new Utf8JsonWriter(buffer, FakeJson.WriterOptions))
        {
            write(writer);
        }

        return buffer.WrittenSpan.ToArray();
    }

    public static byte[] ErrorBody(string type, string message, string? requestId) => Json(w => WriteError(w, type, message, requestId));

    public static void WriteError(Utf8JsonWriter writer, string type, string message, string? requestId)
    {
        writer.WriteStartObject();
        writer.WriteString("type", "error");
        writer.WriteStartObject("error");
        writer.WriteString("type", type);
        writer.WriteString("message", message);
        writer.WriteEndObject();
        if (requestId is null)
        {
            writer.WriteNull("request_id");
        }
        else
        {
            writer.WriteString("request_id", requestId);
        }

        writer.WriteEndObject();
    }

    public static void WriteMessage(Utf8JsonWriter writer, RenderedMessage message)
    {
        writer.WriteStartObject();
        WriteMessageHead(writer, message);
        writer.WriteStartArray("content");
        foreach (var block in message.Content)
        {
            WriteBlock(writer, block, complete: true);
        }

        writer.WriteEndArray();
        WriteStop(writer, message);

        writer.WritePropertyName("usage");
        WriteUsage(writer, message.Usage, message.Usage.Output);
        writer.WriteEndObject();
    }

    /// <summary>Every SSE event of a streamed answer, in order, with the index at which the ping goes.</summary>
    public static List<byte[]> StreamEvents(RenderedMessage message, int chunkSize)
    {
        var events = new List<byte[]>
        {
            Event("message_start", w =>
            {
                w.WriteString("type", "message_start");
                w.WriteStartObject("message");
                WriteMessageHead(w, message);
                w.WriteStartArray("content");
                w.WriteEndArray();
                w.WriteNull("stop_reason");
                w.WriteNull("stop_sequence");
                w.WritePropertyName("usage");
                WriteUsage(w, message.Usage, 1);
                w.WriteEndObject();
            }),
        };

        for (var index = 0; index < message.Content.Count; index++)
        {
            var block = message.Content[index];
            events.Add(Event("content_block_start", w =>
            {
                w.WriteString("type", "content_block_start");
                w.WriteNumber("index", index);
                w.WritePropertyName("content_block");
                WriteBlock(w, block, complete: false);
            }));
            if (index == 0)
            {
                events.Add(s_ping);
            }

            switch (block)
            {
                case FakeTextBlock text:
                    // As Claude streams a cited passage: the block starts without citations, each comes in a citations_delta
                    // before the text.
                    foreach (var citation in text.Citations)
                    {
                        events.Add(Event("content_block_delta", w =>
                        {
                            w.WriteString("type", "content_block_delta");
                            w.WriteNumber("index", index);
                            w.WriteStartObject("delta");
                            w.WriteString("type", "citations_delta");
                            w.WritePropertyName("citation");
                            citation.WriteTo(w);
                            w.WriteEndObject();
                        }));
                    }

                    foreach (var chunk in Chunks(text.Text, chunkSize))
                    {
                        events.Add(Delta(index, "text_delta", "text", chunk));
                    }

                    break;
                case FakeThinkingBlock thinking:
                    foreach (var chunk in Chunks(thinking.Thinking, chunkSize))
                    {
                        events.Add(Delta(index, "thinking_delta", "thinking", chunk));
                    }

                    events.Add(Delta(index, "signature_delta", "signature", thinking.Signature));
                    break;
                case FakeToolUseBlock toolUse:
                    events.Add(Delta(index, "input_json_delta", "partial_json", ""));
                    foreach (var chunk in Chunks(toolUse.PartialInputJson ?? FakeJson.ToText(toolUse.Input), chunkSize))
                    {
                        events.Add(Delta(index, "input_json_delta", "partial_json", chunk));
                    }

                    break;
            }

            events.Add(Event("content_block_stop", w =>
            {
                w.WriteString("type", "content_block_stop");
                w.WriteNumber("index", index);
            }));
        }

        if (message.Content.Count == 0)
        {
            events.Add(s_ping);
        }

        events.Add(Event("message_delta", w =>
        {
            w.WriteString("type", "message_delta");
            w.WriteStartObject("delta");
            WriteStop(w, message);
            w.WriteEndObject();
            w.WriteStartObject("usage");
            w.WriteNumber("input_tokens", message.Usage.Input);
            w.WriteNumber("cache_creation_input_tokens", message.Usage.CacheCreation);
            w.WriteNumber("cache_read_input_tokens", message.Usage.CacheRead);
            w.WriteNumber("output_tokens", message.Usage.Output);
            WriteServerToolUse(w, message.Usage);
            w.WriteEndObject();
        }));
        events.Add(Event("message_stop", w => w.WriteString("type", "message_stop")));
        return events;
    }

    public static byte[] ErrorEvent(string type, string message, string requestId) =>
        Frame("error", ErrorBody(type, message, requestId));

    /// <summary>Splits text into pieces of at most <paramref name="size"/> characters, never inside a surrogate pair.</summary>
    public static IEnumerable<string> Chunks(string text, int size)
    {
        var start = 0;
        while (start < text.Length)
        {
            var length = Math.Min(size, text.Length - start);
            if (length > 1 && start + length < text.Length && char.IsHighSurrogate(text[start + length - 1]))
            {
                length--;
            }

            yield return text.Substring(start, length);
            start += length;
        }
    }

    private static void WriteMessageHead(Utf8JsonWriter writer, RenderedMessage message)
    {
        writer.WriteString("id", message.Id);
        writer.WriteString("type", "message");
        writer.WriteString("role", "assistant");
        writer.WriteString("model", message.Model);
    }

    /// <summary>The <c>stop_reason</c> and <c>stop_sequence</c> of a message or a <c>message_delta</c> event.</summary>
    private static void WriteStop(Utf8JsonWriter writer, RenderedMessage message)
    {
        writer.WriteString("stop_reason", message.StopReason);
        if (message.StopSequence is null)
        {
            writer.WriteNull("stop_sequence");
        }
        else
        {
            writer.WriteString("stop_sequence", message.StopSequence);
        }
    }

    private static void WriteUsage(Utf8JsonWriter writer, UsageCounts usage, long outputTokens)
    {
        writer.WriteStartObject();
        writer.WriteNumber("input_tokens", usage.Input);
        writer.WriteNumber("cache_creation_input_tokens", usage.CacheCreation);
        writer.WriteNumber("cache_read_input_tokens", usage.CacheRead);
        writer.WriteStartObject("cache_creation");
        writer.WriteNumber("ephemeral_5m_input_tokens", usage.Creation5m);
        writer.WriteNumber("ephemeral_1h_input_tokens", usage.Creation1h);
        writer.WriteEndObject();
        writer.WriteNumber("output_tokens", outputTokens);
        WriteServerToolUse(writer, usage);
        writer.WriteString("service_tier", "standard");
        writer.WriteEndObject();
    }

    /// <summary><c>usage.server_tool_use</c>, when the answer ran a server tool Claude bills per use.</summary>
    private static void WriteServerToolUse(Utf8JsonWriter writer, UsageCounts usage)
    {
        if (usage.WebSearchRequests == 0 && usage.WebFetchRequests == 0)
        {
            return;
        }

        writer.WriteStartObject("server_tool_use");
        writer.WriteNumber("web_search_requests", usage.WebSearchRequests);
        writer.WriteNumber("web_fetch_requests", usage.WebFetchRequests);
        writer.WriteEndObject();
    }

    private static void WriteBlock(Utf8JsonWriter writer, FakeContentBlock block, bool complete)
    {
        switch (block)
        {
            case FakeRawBlock raw:
                raw.Json.WriteTo(writer);
                return;
            case FakeRedactedThinkingBlock redacted:
                writer.WriteStartObject();
                writer.WriteString("type", "redacted_thinking");
                writer.WriteString("data", redacted.Data);
                writer.WriteEndObject();
                return;
        }

        writer.WriteStartObject();
        writer.WriteString("type", block.Type);
        switch (block)
        {
            case FakeTextBlock text:
                writer.WriteString("text", complete ? text.Text : "");
                if (complete && text.Citations.Count > 0)
                {
                    writer.WriteStartArray("citations");
                    foreach (var citation in text.Citations)
                    {
                        citation.WriteTo(writer);
                    }

                    writer.WriteEndArray();
                }

                break;
            case FakeThinkingBlock thinking:
                writer.WriteString("thinking", complete ? thinking.Thinking : "");
                writer.WriteString("signature", complete ? thinking.Signature : "");
                break;
            case FakeToolUseBlock toolUse:
                writer.WriteString("id", toolUse.Id);
                writer.WriteString("name", toolUse.Name);
                writer.WritePropertyName("input");
                (complete ? toolUse.Input : FakeJson.EmptyObject).WriteTo(writer);
                break;
        }

        writer.WriteEndObject();
    }

    private static byte[] Delta(int index, string deltaType, string field, string value) => Event("content_block_delta", w =>
    {
        w.WriteString("type", "content_block_delta");
        w.WriteNumber("index", index);
        w.WriteStartObject("delta");
        w.WriteString("type", deltaType);
        w.WriteString(field, value);
        w.WriteEndObject();
    });

    private static byte[] Event(string name, Action<Utf8JsonWriter> writeMembers) => Frame(name, Json(w =>
    {
        w.WriteStartObject();
        writeMembers(w);
        w.WriteEndObject();
    }));

    private static byte[] Frame(string name, byte[] data)
    {
        var head = Encoding.UTF8.GetBytes(string.Create(CultureInfo.InvariantCulture, $"event: {name}\ndata: "));
        var frame = new byte[head.Length + data.Length + 2];
        head.CopyTo(frame, 0);
        data.CopyTo(frame, head.Length);
        frame[^2] = (byte)'\n';
        frame[^1] = (byte)'\n';
        return frame;
    }
}
