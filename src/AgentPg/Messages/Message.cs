namespace AgentPg;

/// <summary>One message of a session's conversation.</summary>
public sealed record Message
{
    /// <summary>Gets the id.</summary>
    public Guid Id { get; init; }

    /// <summary>Gets the session.</summary>
    public Guid SessionId { get; init; }

    /// <summary>Gets the run that produced the message; <see langword="null"/> for compaction summaries.</summary>
    public Guid? RunId { get; init; }

    /// <summary>Gets the author.</summary>
    public MessageRole Role { get; init; }

    /// <summary>Gets the content blocks, in order.</summary>
    public IReadOnlyList<ContentBlock> Content { get; init; } = [];

    /// <summary>Gets the usage of the model call that produced an assistant message.</summary>
    public Usage Usage { get; init; } = Usage.Zero;

    /// <summary>Gets whether compaction must keep the message.</summary>
    public bool IsPreserved { get; init; }

    /// <summary>Gets whether the message is a compaction summary.</summary>
    public bool IsSummary { get; init; }

    /// <summary>Gets free-form metadata.</summary>
    public IReadOnlyDictionary<string, object?> Metadata { get; init; } = EmptyDictionary.Instance;

    /// <summary>Gets when the message was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }
}
