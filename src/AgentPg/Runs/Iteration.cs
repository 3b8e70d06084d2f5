namespace AgentPg;

/// <summary>One model call of a run.</summary>
public sealed record Iteration
{
    /// <summary>Gets the id (also the <c>custom_id</c> of its batch request).</summary>
    public Guid Id { get; init; }

    /// <summary>Gets the run.</summary>
    public Guid RunId { get; init; }

    /// <summary>Gets the 1-based number within the run.</summary>
    public int IterationNumber { get; init; }

    /// <summary>Gets whether the call used the streaming API.</summary>
    public bool IsStreaming { get; init; }

    /// <summary>Gets what started it: <c>user_prompt</c>, <c>tool_results</c> or <c>continuation</c>.</summary>
    public string TriggerType { get; init; } = Runs.TriggerTypes.UserPrompt;

    /// <summary>Gets the message batch id, for batch runs.</summary>
    public string? BatchId { get; init; }

    /// <summary>Gets the batch status, for batch runs.</summary>
    public BatchStatus? BatchStatus { get; init; }

    /// <summary>Gets when the batch was submitted.</summary>
    public DateTimeOffset? BatchSubmittedAt { get; init; }

    /// <summary>Gets when the batch ended.</summary>
    public DateTimeOffset? BatchCompletedAt { get; init; }

    /// <summary>Gets when the batch expires.</summary>
    public DateTimeOffset? BatchExpiresAt { get; init; }

    /// <summary>Gets how many times the batch was polled.</summary>
    public int BatchPollCount { get; init; }

    /// <summary>Gets the <c>max_tokens</c> sent with the call.</summary>
    public int? MaxTokens { get; init; }

    /// <summary>Gets the stop reason of the answer.</summary>
    public string? StopReason { get; init; }

    /// <summary>Gets the assistant message the call produced.</summary>
    public Guid? ResponseMessageId { get; init; }

    /// <summary>Gets whether the answer asked for tools.</summary>
    public bool HasToolUse { get; init; }

    /// <summary>Gets how many tool executions the answer created.</summary>
    public int ToolExecutionCount { get; init; }

    /// <summary>Gets the usage of this model call: every answer Claude charged for it, also one that was dropped and requested
    /// again (a stream that failed and was retried, an answer cut off by the context window); for a batch iteration still
    /// waiting at Claude, what its earlier batches were charged.</summary>
    public Usage Usage { get; init; } = Usage.Zero;

    /// <summary>Gets the server tools Claude ran in this call that it bills per use (web searches and fetches), counted like
    /// <see cref="Usage"/>: every answer charged for, also one that was dropped.</summary>
    public ServerToolUsage ServerToolUse { get; init; } = ServerToolUsage.None;

    /// <summary>Gets the error, when the call failed or was abandoned.</summary>
    public string? ErrorMessage { get; init; }

    /// <summary>Gets the kind of error.</summary>
    public string? ErrorType { get; init; }

    /// <summary>Gets when the iteration was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Gets when the call started.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>Gets when the call's result was recorded.</summary>
    public DateTimeOffset? CompletedAt { get; init; }
}
