namespace AgentPg;

/// <summary>What a compaction did.</summary>
public sealed record CompactionResult
{
    /// <summary>Gets the id of the recorded <see cref="CompactionEvent"/> (pass it to
    /// <see cref="AgentPgClient.RestoreCompactionAsync"/> to undo the compaction).</summary>
    public Guid EventId { get; init; }

    /// <summary>Gets the session.</summary>
    public Guid SessionId { get; init; }

    /// <summary>Gets the strategy used.</summary>
    public CompactionStrategy Strategy { get; init; }

    /// <summary>Gets the size of the root conversation before, in tokens.</summary>
    public long OriginalTokens { get; init; }

    /// <summary>Gets the size of the root conversation after, in tokens (estimated for the summary).</summary>
    public long CompactedTokens { get; init; }

    /// <summary>Gets how many messages were removed and replaced by the summary.</summary>
    public int MessagesRemoved { get; init; }

    /// <summary>Gets how many messages had old tool outputs replaced by a placeholder and were kept.</summary>
    public int MessagesPruned { get; init; }

    /// <summary>Gets whether a summary message was written.</summary>
    public bool SummaryCreated { get; init; }

    /// <summary>Gets the ids of the messages kept as they were.</summary>
    public IReadOnlyList<Guid> PreservedMessageIds { get; init; } = [];

    /// <summary>Gets the summariser's token usage (zero when nothing was summarised).</summary>
    public Usage Usage { get; init; } = Usage.Zero;

    /// <summary>Gets how long the compaction took, summariser call included.</summary>
    public TimeSpan Duration { get; init; }
}
