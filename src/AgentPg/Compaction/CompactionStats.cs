namespace AgentPg;

/// <summary>The size of a session's root conversation and what a compaction could remove.</summary>
public sealed record CompactionStats
{
    /// <summary>Gets the session.</summary>
    public Guid SessionId { get; init; }

    /// <summary>Gets the number of messages of the root conversation (delegated runs' messages are not part of it).</summary>
    public int TotalMessages { get; init; }

    /// <summary>Gets the size of the root conversation in tokens.</summary>
    public long TotalTokens { get; init; }

    /// <summary>Gets <see cref="TotalTokens"/> as a share of <see cref="CompactionOptions.MaxTokensForModel"/> (0 to 1, or more
    /// when over the window).</summary>
    public double UsageFraction { get; init; }

    /// <summary>Gets how many compactions the session has had (restored ones are not counted).</summary>
    public int CompactionCount { get; init; }

    /// <summary>Gets how many messages a compaction would keep as they are.</summary>
    public int PreservedMessages { get; init; }

    /// <summary>Gets how many summary messages the conversation holds.</summary>
    public int SummaryMessages { get; init; }

    /// <summary>Gets how many messages a compaction could prune or remove.</summary>
    public int CompactableMessages { get; init; }

    /// <summary>Gets whether <see cref="TotalTokens"/> reaches <see cref="CompactionOptions.TriggerTokens"/>.</summary>
    public bool NeedsCompaction { get; init; }
}
