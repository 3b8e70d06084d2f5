using System.Text.Json;

namespace AgentPg;

/// <summary>Reads the content array of a tool_result (text, image and document blocks) into <see cref="ContentBlock"/>s.</summary>
internal static class ContentBlocks
{
    public static IReadOnlyList<ContentBlock> FromJsonArray(string json)
    {
        using var document = JsonDocument.Parse(json);
        return FromJsonArray(document.RootElement);
    }

    public static IReadOnlyList<ContentBlock> FromJsonArray(JsonElement array)
    {
        if (array.ValueKind != JsonValueKind.Array)
        {
            return [];
        }

        var blocks = new List<ContentBlock>(array.GetArrayLength());
        foreach (var element in array.EnumerateArray())
        {
            if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
            {
                continue;
            }

            blocks.Add(new ContentBlock
            {
                Type = type.GetString()!,
                Text = element.TryGetProperty("text", out var text) && text.ValueKind == JsonValueKind.String ? text.GetString() : null,
                Source = element.TryGetProperty("source", out var source) ? source.Clone() : null,
                Raw = element.Clone(),
            });
        }

        return blocks;
    }
}
