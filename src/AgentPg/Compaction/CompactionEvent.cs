namespace AgentPg;

/// <summary>A recorded compaction of a session.</summary>
public sealed record CompactionEvent
{
    /// <summary>Gets the event id.</summary>
    public Guid Id { get; init; }

    /// <summary>Gets the session.</summary>
    public Guid SessionId { get; init; }

    /// <summary>Gets the strategy used.</summary>
    public CompactionStrategy Strategy { get; init; }

    /// <summary>Gets what started the compaction: <c>manual</c>, <c>auto</c> (over the trigger before a request) or
    /// <c>context_window</c> (Claude answered that the prompt was too long) or <c>request_too_large</c> (Claude refused the
    /// request's size, over 32 MB).</summary>
    public string Reason { get; init; } = "";

    /// <summary>Gets the size before, in tokens.</summary>
    public long OriginalTokens { get; init; }

    /// <summary>Gets the size after, in tokens.</summary>
    public long CompactedTokens { get; init; }

    /// <summary>Gets how many messages were removed.</summary>
    public int MessagesRemoved { get; init; }

    /// <summary>Gets how many messages had tool outputs pruned.</summary>
    public int MessagesPruned { get; init; }

    /// <summary>Gets the summary written, if any.</summary>
    public string? SummaryContent { get; init; }

    /// <summary>Gets the ids of the messages kept as they were.</summary>
    public IReadOnlyList<Guid> PreservedMessageIds { get; init; } = [];

    /// <summary>Gets the summariser model, when a summary was written.</summary>
    public string? ModelUsed { get; init; }

    /// <summary>Gets the summariser's token usage.</summary>
    public Usage Usage { get; init; } = Usage.Zero;

    /// <summary>Gets how long the compaction took.</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>Gets when the compaction was recorded.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Gets when the compaction was undone by <see cref="AgentPgClient.RestoreCompactionAsync"/>, if it was.</summary>
    public DateTimeOffset? RestoredAt { get; init; }
}
