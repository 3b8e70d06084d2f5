namespace AgentPg;

/// <summary>The result of a completed run.</summary>
public sealed record Response
{
    /// <summary>Gets the run.</summary>
    public Guid RunId { get; init; }

    /// <summary>Gets the text of the final answer.</summary>
    public string Text { get; init; } = "";

    /// <summary>Gets the stop reason of the final answer (<c>end_turn</c>, <c>max_tokens</c>, <c>refusal</c> …).</summary>
    public string StopReason { get; init; } = "";

    /// <summary>Gets the usage of this run's own iterations.</summary>
    public Usage Usage { get; init; } = Usage.Zero;

    /// <summary>Gets the usage of this run plus every child run it delegated to, recursively.</summary>
    public Usage TotalUsage { get; init; } = Usage.Zero;

    /// <summary>Gets the final assistant message.</summary>
    public Message? Message { get; init; }

    /// <summary>Gets how many iterations (model calls) the run made.</summary>
    public int IterationCount { get; init; }

    /// <summary>Gets how many iterations asked for tools.</summary>
    public int ToolIterations { get; init; }

    /// <summary>Gets the run's tool calls in the order Claude made them.</summary>
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];
}
