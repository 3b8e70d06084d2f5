namespace AgentPg;

/// <summary>The result of a completed run.</summary>
public sealed record Response
{
    /// <summary>Gets the run.</summary>
    public Guid RunId { get; init; }

    /// <summary>Gets the text of the final answer: the text blocks of the run's last model call.</summary>
    /// <remarks>When Claude paused its turn (stop reason <c>pause_turn</c>, for example during a long web search) and the run
    /// continued it, the text written before the pause is in the run's earlier assistant messages in the session
    /// (<see cref="AgentPgClient.GetMessagesAsync(Guid, CancellationToken)"/>), not here.</remarks>
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
