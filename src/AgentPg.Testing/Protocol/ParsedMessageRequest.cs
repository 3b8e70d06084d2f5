using System.Text;
using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>A failure answered in the real API's error shape.</summary>
internal sealed record ApiFailure(int Status, string Type, string Message)
{
    public static ApiFailure Invalid(string message) => new(400, "invalid_request_error", message);

    /// <summary>The API's answer to an object whose <c>type</c> tag is missing or not one of <paramref name="expected"/>.</summary>
    public static ApiFailure UnknownTag(string path, string? tag, params IEnumerable<string> expected)
        => Invalid($"{path}: Input tag '{tag}' found using 'type' does not match any of the expected tags: {string.Join(", ", expected.Select(t => "'" + t + "'"))}");
}

/// <summary>One block of a merged conversation turn; a string <c>content</c> is one text block with index -1.</summary>
internal readonly record struct TurnBlock(int MessageIndex, int BlockIndex, string Type, JsonElement Element)
{
    public string Text => Element.ValueKind == JsonValueKind.String ? Element.GetString() ?? "" : FakeJson.GetString(Element, "text") ?? "";

    public string Path => BlockIndex < 0 ? $"messages.{MessageIndex}.content" : $"messages.{MessageIndex}.content.{BlockIndex}";
}

/// <summary>Consecutive messages of one role, merged the way the API merges them.</summary>
internal sealed class Turn(string role, int firstMessageIndex)
{
    public string Role { get; } = role;

    public int FirstMessageIndex { get; } = firstMessageIndex;

    public int LastMessageIndex { get; set; } = firstMessageIndex;

    public List<TurnBlock> Blocks { get; } = [];

    public string Text
    {
        get
        {
            var builder = new StringBuilder();
            foreach (var block in Blocks)
            {
                if (block.Type == "text")
                {
                    if (builder.Length > 0)
                    {
                        builder.Append('\n');
                    }

                    builder.Append(block.Text);
                }
            }

            return builder.ToString();
        }
    }
}

/// <summary>A Messages (or count_tokens) request that passed validation.</summary>
internal sealed class ParsedMessageRequest
{
    public required JsonElement Body { get; init; }

    public required string Model { get; init; }

    public long MaxTokens { get; init; }

    public bool Stream { get; init; }

    public required IReadOnlyList<Turn> Turns { get; init; }

    public required IReadOnlyList<FakeTool> Tools { get; init; }

    public JsonElement? ToolChoice { get; init; }

    public JsonElement? Thinking { get; init; }

    public required string SystemText { get; init; }

    public required PromptAnalysis Prompt { get; init; }
}
