using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>A scripted block of any other type, sent verbatim; see <see cref="FakeContentBlock.Raw(JsonElement)"/>.</summary>
public sealed record FakeRawBlock : FakeContentBlock
{
    /// <summary>Creates the block.</summary>
    /// <param name="json">The block object; it must have a string <c>type</c>.</param>
    public FakeRawBlock(JsonElement json)
    {
        if (json.ValueKind != JsonValueKind.Object || !json.TryGetProperty("type", out var type) || type.ValueKind != JsonValueKind.String)
        {
            throw new ArgumentException("A raw content block must be a JSON object with a string \"type\".", nameof(json));
        }

        Json = json.Clone();
    }

    /// <summary>The block object.</summary>
    public JsonElement Json { get; }

    /// <inheritdoc />
    public override string Type => Json.GetProperty("type").GetString()!;
}
