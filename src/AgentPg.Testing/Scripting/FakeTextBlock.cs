namespace AgentPg.Testing;

/// <summary>A scripted <c>text</c> block.</summary>
/// <param name="Text">The text; streamed as <c>text_delta</c> chunks.</param>
public sealed record FakeTextBlock(string Text) : FakeContentBlock
{
    /// <summary>The text.</summary>
    public new string Text { get; init; } = Text ?? throw new ArgumentNullException(nameof(Text));

    /// <inheritdoc />
    public override string Type => "text";
}
