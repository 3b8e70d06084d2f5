namespace AgentPg.Testing;

/// <summary>A scripted <c>thinking</c> block.</summary>
/// <param name="Thinking">The thinking text; streamed as <c>thinking_delta</c> chunks.</param>
/// <param name="Signature">The signature; streamed as one <c>signature_delta</c> just before the block stops.</param>
public sealed record FakeThinkingBlock(string Thinking, string Signature) : FakeContentBlock
{
    /// <summary>The thinking text.</summary>
    public new string Thinking { get; init; } = Thinking ?? throw new ArgumentNullException(nameof(Thinking));

    /// <summary>The signature.</summary>
    public string Signature { get; init; } = Signature ?? throw new ArgumentNullException(nameof(Signature));

    /// <inheritdoc />
    public override string Type => "thinking";
}
