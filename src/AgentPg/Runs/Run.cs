namespace AgentPg;

/// <summary>One request to an agent in a session and everything the engine recorded about processing it.</summary>
public sealed record Run
{
    /// <summary>Gets the id.</summary>
    public Guid Id { get; init; }

    /// <summary>Gets the session the run belongs to.</summary>
    public Guid SessionId { get; init; }

    /// <summary>Gets the agent that answers.</summary>
    public Guid AgentId { get; init; }

    /// <summary>Gets how the run calls Claude.</summary>
    public RunMode RunMode { get; init; }

    /// <summary>Gets the run that delegated to this one (agent as tool), if any.</summary>
    public Guid? ParentRunId { get; init; }

    /// <summary>Gets the parent's tool execution this run answers, if any.</summary>
    public Guid? ParentToolExecutionId { get; init; }

    /// <summary>Gets the delegation depth: 0 for a root run.</summary>
    public int Depth { get; init; }

    /// <summary>Gets the state.</summary>
    public RunState State { get; init; }

    /// <summary>Gets the state before the last transition.</summary>
    public RunState? PreviousState { get; init; }

    /// <summary>Gets the prompt; it becomes the run's first user message when processing starts.</summary>
    public string Prompt { get; init; } = "";

    /// <summary>Gets the idempotency key the run was created with, if any.</summary>
    public string? IdempotencyKey { get; init; }

    /// <summary>Gets the number of the latest iteration (model call) started.</summary>
    public int CurrentIteration { get; init; }

    /// <summary>Gets the id of the latest iteration started.</summary>
    public Guid? CurrentIterationId { get; init; }

    /// <summary>Gets the text of the final answer.</summary>
    public string? ResponseText { get; init; }

    /// <summary>Gets the stop reason of the final answer (for example <c>end_turn</c>, <c>max_tokens</c>, <c>refusal</c>).</summary>
    public string? StopReason { get; init; }

    /// <summary>Gets the usage summed over the run's iterations (child runs excluded).</summary>
    public Usage Usage { get; init; } = Usage.Zero;

    /// <summary>Gets how many iterations completed.</summary>
    public int IterationCount { get; init; }

    /// <summary>Gets how many iterations asked for tools.</summary>
    public int ToolIterations { get; init; }

    /// <summary>Gets how many continuation iterations the run made (after <c>pause_turn</c> or a truncated tool call).</summary>
    public int ContinuationCount { get; init; }

    /// <summary>Gets the error of a failed or cancelled run.</summary>
    public string? ErrorMessage { get; init; }

    /// <summary>Gets the kind of error, for example <c>model_error</c> or <c>rescue_failed</c>.</summary>
    public string? ErrorType { get; init; }

    /// <summary>Gets the instance that created the run.</summary>
    public string? CreatedByInstanceId { get; init; }

    /// <summary>Gets the instance currently holding the run, if any.</summary>
    public string? ClaimedByInstanceId { get; init; }

    /// <summary>Gets when the current holder claimed the run.</summary>
    public DateTimeOffset? ClaimedAt { get; init; }

    /// <summary>Gets the fencing token: incremented on every claim and release.</summary>
    public long ClaimEpoch { get; init; }

    /// <summary>Gets the variables passed to tools (<see cref="RunOptions.Variables"/>).</summary>
    public IReadOnlyDictionary<string, object?> Variables { get; init; } = EmptyDictionary.Instance;

    /// <summary>Gets the instructions that replaced the agent's system prompt for this run, if any.</summary>
    public string? OverrideInstructions { get; init; }

    /// <summary>Gets the instructions appended to the agent's system prompt for this run, if any.</summary>
    public string? AppendInstructions { get; init; }

    /// <summary>Gets the JSON schema of this run's final answer (<see cref="RunOptions.OutputSchema"/>), if the run was given
    /// one; <see langword="null"/> when it follows its agent's <see cref="AgentDefinition.OutputSchema"/> or answers in free text.</summary>
    public System.Text.Json.JsonElement? OutputSchema { get; init; }

    /// <summary>Gets the iteration limit this run was given (<see cref="RunOptions.MaxIterations"/>), if any; <see langword="null"/>
    /// when it follows its agent's <see cref="AgentDefinition.MaxIterations"/> or has no limit.</summary>
    public int? MaxIterations { get; init; }

    /// <summary>Gets the token budget of the run's tree as stored with the run: the root run's <see cref="RunOptions.TokenBudget"/>,
    /// or for a child run its root's budget (given to the root or its agent) when the child was created; <see langword="null"/>
    /// for a root run that follows its agent's <see cref="AgentDefinition.TokenBudget"/>, or when there is no budget.</summary>
    public long? TokenBudget { get; init; }

    /// <summary>Gets when the run was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Gets when processing first started.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>Gets when the run reached a terminal state.</summary>
    public DateTimeOffset? FinalizedAt { get; init; }

    /// <summary>Gets how many times the run was rescued from a dead or stuck worker.</summary>
    public int RescueAttempts { get; init; }

    /// <summary>Gets when the run was last rescued.</summary>
    public DateTimeOffset? LastRescueAt { get; init; }
}
