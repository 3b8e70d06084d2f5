namespace AgentPg;

/// <summary>A compaction about to run, as seen by <see cref="AgentPgHooks.OnBeforeCompaction"/>.</summary>
public sealed record CompactionContext
{
    /// <summary>Gets the session.</summary>
    public Guid SessionId { get; init; }

    /// <summary>Gets the run whose iteration triggered it, for automatic compactions.</summary>
    public Guid? RunId { get; init; }

    /// <summary>Gets what started it: <c>manual</c>, <c>auto</c>, <c>context_window</c> or <c>request_too_large</c>.</summary>
    public string Reason { get; init; } = "";

    /// <summary>Gets the strategy.</summary>
    public CompactionStrategy Strategy { get; init; }

    /// <summary>Gets the size of the root conversation, in tokens.</summary>
    public long TotalTokens { get; init; }

    /// <summary>Gets how many messages may be pruned or removed.</summary>
    public int CompactableMessages { get; init; }
}
