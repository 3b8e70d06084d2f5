namespace AgentPg;

/// <summary>A conversation: the messages of its runs, in order.</summary>
public sealed record Session
{
    /// <summary>Gets the id.</summary>
    public Guid Id { get; init; }

    /// <summary>Gets the parent session, if this session was created under one.</summary>
    public Guid? ParentSessionId { get; init; }

    /// <summary>Gets the nesting depth: 0 for a top-level session, parent depth + 1 otherwise.</summary>
    public int Depth { get; init; }

    /// <summary>Gets free-form metadata, for example a tenant or user id.</summary>
    public IReadOnlyDictionary<string, object?> Metadata { get; init; } = EmptyDictionary.Instance;

    /// <summary>Gets how many times the session's context was compacted.</summary>
    public int CompactionCount { get; init; }

    /// <summary>Gets when the session was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Gets when the session was last updated.</summary>
    public DateTimeOffset UpdatedAt { get; init; }
}
