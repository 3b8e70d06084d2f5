using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>A scripted <c>text</c> block.</summary>
/// <param name="Text">The text; streamed as <c>text_delta</c> chunks.</param>
public sealed record FakeTextBlock(string Text) : FakeContentBlock
{
    /// <summary>The text.</summary>
    public new string Text { get; init; } = Text ?? throw new ArgumentNullException(nameof(Text));

    /// <summary>The passages the text cites (<c>citations</c>), each a citation object as Claude sends it (see
    /// <see cref="FakeCitation"/>); streamed as one <c>citations_delta</c> each, before the text. Empty by default: the block
    /// has no <c>citations</c>.</summary>
    public IReadOnlyList<JsonElement> Citations { get; init; } = [];

    /// <inheritdoc />
    public override string Type => "text";
}
