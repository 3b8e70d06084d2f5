namespace AgentPg.Runs;

/// <summary>The error_type values runs and iterations are recorded with (users read them in
/// <see cref="AgentPgException.Context"/>["error_type"]).</summary>
internal static class ErrorTypes
{
    /// <summary>An iteration whose holder died or made no progress; the rescue gave its run back (set in SQL).</summary>
    public const string Abandoned = "abandoned";

    /// <summary>A run rescued more often than <see cref="RunRescueOptions.MaxAttempts"/> (set in SQL).</summary>
    public const string RescueFailed = "rescue_failed";

    /// <summary>An iteration whose response ended inside a tool call at max_tokens; the next one continues with more tokens.</summary>
    public const string TruncatedToolUse = "truncated_tool_use";

    public const string MaxTokensExceeded = "max_tokens_exceeded";
    public const string ContextWindowExceeded = "context_window_exceeded";

    /// <summary>A request over Claude's size limit (HTTP 413: 32 MB, 256 MB for a message batch) that compaction did not bring under it.</summary>
    public const string RequestTooLarge = "request_too_large";
    public const string ContinuationLimit = "continuation_limit";

    /// <summary>A run that would have made more model calls than its <see cref="AgentDefinition.MaxIterations"/> or
    /// <see cref="RunOptions.MaxIterations"/> (<see cref="RunLimits"/>).</summary>
    public const string IterationLimit = "iteration_limit";

    /// <summary>A run whose tree had used its <see cref="RunOptions.TokenBudget"/> or <see cref="AgentDefinition.TokenBudget"/>
    /// before a model call (<see cref="RunLimits"/>).</summary>
    public const string TokenBudgetExceeded = "token_budget_exceeded";
    public const string ModelError = "model_error";
    public const string ProcessingError = "processing_error";
    public const string BatchError = "batch_error";
    public const string BatchExpired = "batch_expired";
}
