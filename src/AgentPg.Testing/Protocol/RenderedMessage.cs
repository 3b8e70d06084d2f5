namespace AgentPg.Testing;

/// <summary>An assistant message ready to send: ids generated, usage computed.</summary>
internal sealed record RenderedMessage(string Id, string Model, IReadOnlyList<FakeContentBlock> Content, string StopReason, string? StopSequence, UsageCounts Usage);
