namespace AgentPg.Testing;

/// <summary>The <c>stop_reason</c> values of the Messages API, for <see cref="FakeReply.StopReason"/>.</summary>
public static class FakeStopReason
{
    /// <summary><c>end_turn</c>: the model finished naturally.</summary>
    public const string EndTurn = "end_turn";

    /// <summary><c>max_tokens</c>: the output hit <c>max_tokens</c>.</summary>
    public const string MaxTokens = "max_tokens";

    /// <summary><c>stop_sequence</c>: a custom stop sequence matched; set <see cref="FakeReply.StopSequence"/> too.</summary>
    public const string StopSequence = "stop_sequence";

    /// <summary><c>tool_use</c>: the model called one or more tools.</summary>
    public const string ToolUse = "tool_use";

    /// <summary><c>pause_turn</c>: the server paused a long turn; the client sends the reply back to continue.</summary>
    public const string PauseTurn = "pause_turn";

    /// <summary><c>refusal</c>: the safety classifier stopped the output.</summary>
    public const string Refusal = "refusal";

    /// <summary><c>model_context_window_exceeded</c>: generation hit the context window.</summary>
    public const string ModelContextWindowExceeded = "model_context_window_exceeded";
}
