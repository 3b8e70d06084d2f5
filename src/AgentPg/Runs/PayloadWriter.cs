using System.Buffers;
using System.Text;
using System.Text.Json;

namespace AgentPg.Runs;

/// <summary>A payload's JSON object written straight to UTF-8 (the same text a <c>JsonObject</c> would serialize to, without
/// building one per notification); one per thread, reused.</summary>
internal sealed class PayloadWriter
{
    private readonly ArrayBufferWriter<byte> _buffer = new(256);

    private PayloadWriter() => Json = new Utf8JsonWriter(_buffer);

    public Utf8JsonWriter Json { get; }

    /// <summary>This thread's writer, emptied, with the object started.</summary>
    public static PayloadWriter Start(ref PayloadWriter? threadWriter)
    {
        var writer = threadWriter ??= new PayloadWriter();
        writer._buffer.ResetWrittenCount();
        writer.Json.Reset(writer._buffer);
        writer.Json.WriteStartObject();
        return writer;
    }

    /// <summary>Ends the object and returns its text.</summary>
    public string Finish()
    {
        Json.WriteEndObject();
        Json.Flush();
        return Encoding.UTF8.GetString(_buffer.WrittenSpan);
    }
}
