using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AgentPg.Internal;

/// <summary>Metadata and variables: .NET dictionaries in the API, JSON objects in the database ('{}' for nothing).</summary>
internal static class JsonMapping
{
    public const string EmptyObject = "{}";

    private static readonly JsonSerializerOptions s_options = new(JsonSerializerDefaults.General) { Converters = { new StorableStrings() } };

    public static string ToJsonObject(IReadOnlyDictionary<string, object?>? values, string parameterName)
    {
        if (values is null || values.Count == 0)
        {
            return EmptyObject;
        }

        string json;
        try
        {
            json = JsonSerializer.Serialize(values, s_options);
        }
        catch (UnpairedSurrogateException ex)
        {
            throw new ArgumentException(
                $"{parameterName} holds a {(ex.IsName ? "key" : "string")} with an unpaired UTF-16 surrogate (\\u{(int)ex.Text[ex.Index]:X4}) at " +
                $"index {ex.Index}, which is not a Unicode character and cannot be stored as UTF-8; the text was probably cut in the middle of a " +
                "character or decoded wrongly. Remove it (or replace it, for example with U+FFFD).", parameterName);
        }
        catch (Exception ex) when (ex is NotSupportedException or JsonException or InvalidOperationException or ArgumentException)
        {
            // ArgumentException: a NaN or infinite double, which JSON has no number for.
            throw new ArgumentException(
                $"{parameterName} cannot be stored as JSON: {ex.Message} Use strings, numbers, booleans, lists, dictionaries or JSON-serializable objects.",
                parameterName, ex);
        }

        // jsonb cannot hold U+0000 (22P05); the caller can fix its values (Nul.cs).
        Nul.RejectInJson(json, parameterName, parameterName);
        return json;
    }

    /// <summary>Reads a JSON object into plain .NET values: string, long or double, bool, null,
    /// <see cref="List{T}"/> of values and <see cref="Dictionary{TKey,TValue}"/> of values.</summary>
    public static IReadOnlyDictionary<string, object?> FromJsonObject(string? json)
    {
        if (string.IsNullOrEmpty(json) || json == EmptyObject)
        {
            return EmptyDictionary.Instance;
        }

        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.ValueKind == JsonValueKind.Object
            ? (IReadOnlyDictionary<string, object?>)ToDictionary(doc.RootElement)
            : EmptyDictionary.Instance;
    }

    public static Dictionary<string, JsonElement> ToElementDictionary(string? json)
    {
        var result = new Dictionary<string, JsonElement>(StringComparer.Ordinal);
        if (string.IsNullOrEmpty(json))
        {
            return result;
        }

        using var doc = JsonDocument.Parse(json);
        if (doc.RootElement.ValueKind == JsonValueKind.Object)
        {
            foreach (var p in doc.RootElement.EnumerateObject())
            {
                result[p.Name] = p.Value.Clone();
            }
        }

        return result;
    }

    public static object? ToClr(JsonElement e) => e.ValueKind switch
    {
        JsonValueKind.String => e.GetString(),
        JsonValueKind.Number => e.TryGetInt64(out var l) ? (object)l : e.GetDouble(),
        JsonValueKind.True => true,
        JsonValueKind.False => false,
        JsonValueKind.Object => ToDictionary(e),
        JsonValueKind.Array => e.EnumerateArray().Select(ToClr).ToList(),
        _ => null,
    };

    private static Dictionary<string, object?> ToDictionary(JsonElement e)
    {
        var result = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var p in e.EnumerateObject())
        {
            result[p.Name] = ToClr(p.Value);
        }

        return result;
    }

    public static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);

    /// <summary>Writes strings and dictionary keys as System.Text.Json does, but refuses an unpaired surrogate, which the writer
    /// would silently store as U+FFFD: the caller's text is the caller's to fix (Nul.cs).</summary>
    private sealed class StorableStrings : JsonConverter<string>
    {
        public override string? Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.GetString();

        public override void Write(Utf8JsonWriter writer, string value, JsonSerializerOptions options)
        {
            Check(value, isName: false);
            writer.WriteStringValue(value);
        }

        public override string ReadAsPropertyName(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) => reader.GetString()!;

        public override void WriteAsPropertyName(Utf8JsonWriter writer, string value, JsonSerializerOptions options)
        {
            Check(value, isName: true);
            writer.WritePropertyName(value);
        }

        private static void Check(string value, bool isName)
        {
            if (Nul.IndexOfUnpairedSurrogate(value) is var index and >= 0)
            {
                throw new UnpairedSurrogateException(value, index, isName);
            }
        }
    }

    private sealed class UnpairedSurrogateException(string text, int index, bool isName) : Exception
    {
        public string Text { get; } = text;

        public int Index { get; } = index;

        public bool IsName { get; } = isName;
    }
}
