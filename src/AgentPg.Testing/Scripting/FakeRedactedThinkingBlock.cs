namespace AgentPg.Testing;

/// <summary>A scripted <c>redacted_thinking</c> block; a stream sends it whole in <c>content_block_start</c>.</summary>
/// <param name="Data">The opaque data.</param>
public sealed record FakeRedactedThinkingBlock(string Data) : FakeContentBlock
{
    /// <summary>The opaque data.</summary>
    public string Data { get; init; } = Data ?? throw new ArgumentNullException(nameof(Data));

    /// <inheritdoc />
    public override string Type => "redacted_thinking";
}
