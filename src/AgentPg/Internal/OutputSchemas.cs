using System.Text.Json;

namespace AgentPg.Internal;

/// <summary>The checks and the stored form of a structured-output schema (<see cref="AgentDefinition.OutputSchema"/>,
/// <see cref="RunOptions.OutputSchema"/>).</summary>
/// <remarks>Stored as its JSON text, not as <c>jsonb</c>, which would reorder the properties: Claude writes an answer's
/// properties in the schema's order, and an application that puts <c>"reasoning"</c> before <c>"answer"</c> means it.</remarks>
internal static class OutputSchemas
{
    /// <summary>Checks a schema the caller gives and returns its JSON text, or <see langword="null"/> for none.</summary>
    public static string? Validate(JsonElement? schema, string parameterName, string field)
    {
        if (schema is not { } value)
        {
            return null;
        }

        if (value.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException(
                $"{field} must be a JSON schema object, for example {{\"type\": \"object\", \"properties\": {{…}}, \"required\": […], " +
                $"\"additionalProperties\": false}} (it is a JSON {Kind(value.ValueKind)}); leave it null for answers in free text.",
                parameterName);
        }

        var text = value.GetRawText();
        Nul.RejectInJson(text, parameterName, field);
        return text;
    }

    /// <summary>A stored schema's JSON text as an element.</summary>
    public static JsonElement Parse(string text)
    {
        using var document = JsonDocument.Parse(text);
        return document.RootElement.Clone();
    }

    private static string Kind(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Array => "array",
        JsonValueKind.String => "string",
        JsonValueKind.Number => "number",
        JsonValueKind.True or JsonValueKind.False => "boolean",
        JsonValueKind.Null => "null",
        _ => "value that is not set (default(JsonElement))",
    };
}
