namespace AgentPg;

/// <summary>Optional callbacks into the engine's life, set on <see cref="AgentPgOptions.Hooks"/>.</summary>
/// <remarks>
/// <para>Hooks run on background threads. A hook that throws is logged and never breaks a run.</para>
/// <para>Awaited by the step that calls them (keep them quick: the step waits): <see cref="OnBeforeMessage"/> and
/// <see cref="OnAfterMessage"/> (the run's worker, before the request and before the answer is recorded),
/// <see cref="OnBeforeCompaction"/> and <see cref="OnAfterCompaction"/> (the compaction), <see cref="OnBecameLeader"/> and
/// <see cref="OnLostLeadership"/> (the leader election).</para>
/// <para>Started and not awaited (fire-and-forget; the engine goes on at once): <see cref="OnToolCall"/>,
/// <see cref="OnApprovalRequested"/> and <see cref="OnError"/>.</para>
/// </remarks>
public sealed class AgentPgHooks
{
    /// <summary>Gets or sets a hook called before each model call, with the request about to be sent.</summary>
    public Func<ModelCallContext, CancellationToken, Task>? OnBeforeMessage { get; set; }

    /// <summary>Gets or sets a hook called after each successful model call, with the answer.</summary>
    /// <remarks>Called before the answer is recorded, so it reports the call Claude answered (and was paid for), not what the
    /// run kept: an answer the run then drops — its run cancelled, or its claim lost, while the hook ran or the answer was
    /// being written — was reported all the same, and the stored messages (<see cref="AgentPgClient.GetMessagesAsync"/>) do not
    /// have it. A batch run's answer is read from the batch's results, so one whose recording failed (the database unreachable
    /// past the retries, the instance killed) is read again at a later poll, on this or another instance, and reported again:
    /// key what the hook records by <see cref="ModelCallContext.RunId"/> and <see cref="ModelCallContext.IterationNumber"/>.</remarks>
    public Func<ModelCallContext, CancellationToken, Task>? OnAfterMessage { get; set; }

    /// <summary>Gets or sets a hook called once for every tool execution that ends: success, final failure after retries,
    /// <see cref="ToolDiscardException"/>, <see cref="ToolCancelException"/>, timeout, an unknown tool or an input that fails
    /// the schema (these two on the instance that recorded Claude's answer), and agent tools (on the instance that finished
    /// the child run). Other tools report on the instance that executed them. Not reported: executions skipped because
    /// their run was cancelled, and tool calls rejected by a person or by <see cref="AgentPgOptions.ApprovalTimeout"/> (the
    /// decision is the caller's, possibly inside a transaction that rolls back).</summary>
    /// <remarks>At most once rather than exactly once: when the connection to PostgreSQL drops just as the result commits,
    /// the worker cannot tell that it did (its retry finds the execution no longer claimed by it) and the hook is not called
    /// for that execution. The result itself is stored once and the tool does not run again; the stored calls
    /// (<see cref="AgentPgClient.GetRunToolCallsAsync"/>) are the record to rely on.</remarks>
    public Func<ToolCallEvent, CancellationToken, Task>? OnToolCall { get; set; }

    /// <summary>Gets or sets a hook called when a tool call starts waiting for a person's decision
    /// (<see cref="AgentDefinition.ToolsRequiringApproval"/>), once, on the instance that recorded Claude's answer: the place to
    /// send an email or a chat message. The request stays listed by <see cref="AgentPgClient.GetPendingApprovalsAsync"/>
    /// whether or not the hook succeeds.</summary>
    /// <remarks>At most once rather than exactly once: the hook is started after the answer committed, so an instance that
    /// dies (or stops) in between, or cannot read the requests back from PostgreSQL at that moment, never calls it, and no other
    /// instance does; nor is it called for a request already decided (or whose run was cancelled) when it reads them back. The
    /// request itself is stored and waits either way; a notifier that must not miss one also lists
    /// <see cref="AgentPgClient.GetPendingApprovalsAsync"/> now and then, or watches for <see cref="ApprovalRequestedEvent"/>.</remarks>
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
