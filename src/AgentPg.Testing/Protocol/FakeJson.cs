using System.Text;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.Testing;

/// <summary>JSON helpers shared by the scripting types and the protocol writers.</summary>
internal static class FakeJson
{
    public static readonly JsonElement EmptyObject = JsonSerializer.Deserialize<JsonElement>("{}"u8);

    /// <summary>Writer settings: compact, UTF-8 text unescaped like the real API (the output is never embedded in HTML).</summary>
    public static readonly JsonWriterOptions WriterOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private static readonly JsonSerializerOptions s_serializerOptions = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    /// <summary>Converts a user-supplied tool input into a JSON object.</summary>
    public static JsonElement ToObject(object? input, string parameterName)
    {
        var element = input switch
        {
            null => EmptyObject,
            JsonElement json => json.Clone(),
            JsonDocument document => document.RootElement.Clone(),
            JsonNode node => JsonSerializer.SerializeToElement(node, s_serializerOptions),
            string text => Parse(text, parameterName),
            _ => JsonSerializer.SerializeToElement(input, input.GetType(), s_serializerOptions),
        };
        if (element.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"A tool input must be a JSON object, not {element.ValueKind}.", parameterName);
        }

        return element;
    }

    /// <summary>Compact JSON text of an element, as the writers send it.</summary>
    public static string ToText(JsonElement element)
    {
        var buffer = new System.Buffers.ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer, WriterOptions))
        {
            element.WriteTo(writer);
        }

        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    /// <summary>
    /// The object made of the top-level members of <paramref name="partial"/> that are complete, for a tool_use cut off
    /// mid-object: <c>{"a":1,"b":"x</c> gives <c>{"a":1}</c>; anything unreadable gives <c>{}</c>.
    /// </summary>
    public static JsonElement CompleteTopLevelMembers(string partial)
    {
        var bytes = Encoding.UTF8.GetBytes(partial);
        long complete = -1;
        try
        {
            var reader = new Utf8JsonReader(bytes, isFinalBlock: false, state: default);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return EmptyObject;
            }

            complete = reader.BytesConsumed;
            while (reader.Read())
            {
                if (reader.CurrentDepth == 0 && reader.TokenType == JsonTokenType.EndObject)
                {
                    return JsonSerializer.Deserialize<JsonElement>(bytes.AsSpan(0, (int)reader.BytesConsumed));
                }

                if (reader.CurrentDepth == 1 && reader.TokenType is not (JsonTokenType.PropertyName or JsonTokenType.StartObject or JsonTokenType.StartArray))
                {
                    complete = reader.BytesConsumed;
                }
            }
        }
        catch (JsonException)
        {
            // Malformed text: keep the members read before the error.
        }

        if (complete <= 0)
        {
            return EmptyObject;
        }

        var repaired = new byte[complete + 1];
        bytes.AsSpan(0, (int)complete).CopyTo(repaired);
        repaired[^1] = (byte)'}';
        return JsonSerializer.Deserialize<JsonElement>(repaired);
    }

    /// <summary>The string value of a property, or null when it is missing or not a string.</summary>
    public static string? GetString(JsonElement element, string property) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty(property, out var value) && value.ValueKind == JsonValueKind.String
            ? value.GetString()
            : null;

    /// <summary>The property value when present and not null.</summary>
    public static bool TryGet(JsonElement element, string property, out JsonElement value)
    {
        if (element.ValueKind == JsonValueKind.Object && element.TryGetProperty(property, out value) && value.ValueKind != JsonValueKind.Null)
        {
            return true;
        }

        value = default;
        return false;
    }

    private static JsonElement Parse(string text, string parameterName)
    {
        try
        {
            return JsonSerializer.Deserialize<JsonElement>(text);
        }
        catch (JsonException e)
        {
            throw new ArgumentException($"A tool input string must be JSON text: {e.Message}", parameterName, e);
        }
    }
}
