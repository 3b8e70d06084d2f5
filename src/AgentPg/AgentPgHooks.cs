namespace AgentPg;

/// <summary>Optional callbacks into the engine's life, set on <see cref="AgentPgOptions.Hooks"/>.</summary>
/// <remarks>Hooks run on background threads. A hook that throws is logged and never breaks a run. <see cref="OnBeforeMessage"/>,
/// <see cref="OnAfterMessage"/>, <see cref="OnBecameLeader"/> and <see cref="OnLostLeadership"/> are awaited by the step
/// that calls them (keep them quick); <see cref="OnToolCall"/>, <see cref="OnApprovalRequested"/> and <see cref="OnError"/> are
/// started and not awaited.</remarks>
public sealed class AgentPgHooks
{
    /// <summary>Gets or sets a hook called before each model call, with the request about to be sent.</summary>
    public Func<ModelCallContext, CancellationToken, Task>? OnBeforeMessage { get; set; }

    /// <summary>Gets or sets a hook called after each successful model call, with the answer.</summary>
    public Func<ModelCallContext, CancellationToken, Task>? OnAfterMessage { get; set; }

    /// <summary>Gets or sets a hook called when a tool execution finishes (success or final failure), on the executing instance.</summary>
    public Func<ToolCallEvent, CancellationToken, Task>? OnToolCall { get; set; }

    /// <summary>Gets or sets a hook called when a tool call starts waiting for a person's decision
    /// (<see cref="AgentDefinition.ToolsRequiringApproval"/>), once, on the instance that recorded Claude's answer: the place to
    /// send an email or a chat message. The request stays listed by <see cref="AgentPgClient.GetPendingApprovalsAsync"/>
    /// whether or not the hook succeeds.</summary>
    public Func<ToolApprovalRequest, CancellationToken, Task>? OnApprovalRequested { get; set; }

    /// <summary>Gets or sets a hook called before a session is compacted (by <see cref="AgentPgOptions.AutoCompaction"/> or
    /// <see cref="AgentPgClient.CompactAsync(Guid, CancellationToken)"/>), before the summariser is called.</summary>
    public Func<CompactionContext, CancellationToken, Task>? OnBeforeCompaction { get; set; }

    /// <summary>Gets or sets a hook called after a compaction committed, with its result.</summary>
    public Func<CompactionResult, CancellationToken, Task>? OnAfterCompaction { get; set; }

    /// <summary>Gets or sets a hook called when this instance becomes the leader (it then runs cleanup and rescue).</summary>
    public Func<CancellationToken, Task>? OnBecameLeader { get; set; }

    /// <summary>Gets or sets a hook called when this instance stops being the leader (lease lost, or stopping).</summary>
    public Func<CancellationToken, Task>? OnLostLeadership { get; set; }

    /// <summary>Gets or sets a hook called with errors of background work (worker loops, heartbeat, leadership).</summary>
    public Func<Exception, CancellationToken, Task>? OnError { get; set; }

    internal AgentPgHooks Clone() => (AgentPgHooks)MemberwiseClone();
}

/// <summary>A model call, as seen by <see cref="AgentPgHooks.OnBeforeMessage"/> and <see cref="AgentPgHooks.OnAfterMessage"/>.</summary>
public sealed record ModelCallContext
{
    /// <summary>Gets the run.</summary>
    public Guid RunId { get; init; }

    /// <summary>Gets the run's session.</summary>
    public Guid SessionId { get; init; }

    /// <summary>Gets the run's agent.</summary>
    public Guid AgentId { get; init; }

    /// <summary>Gets the iteration number.</summary>
    public int IterationNumber { get; init; }

    /// <summary>Gets how the run calls Claude.</summary>
    public RunMode RunMode { get; init; }

    /// <summary>Gets the request body (model, max_tokens, system, messages, tools …).</summary>
    public System.Text.Json.JsonElement Request { get; init; }

    /// <summary>Gets the answer (content, stop reason, usage), after the call; <see langword="null"/> before.</summary>
    public System.Text.Json.JsonElement? Response { get; init; }

    /// <summary>Gets the usage of the call, after it.</summary>
    public Usage? Usage { get; init; }
}
