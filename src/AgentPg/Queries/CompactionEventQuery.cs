namespace AgentPg;

/// <summary>Filters of <see cref="AgentPgClient.ListCompactionEventsAsync"/>. Every filter left <see langword="null"/> matches
/// all compaction events; the filters that are set must all match.</summary>
public sealed record CompactionEventQuery
{
    /// <summary>Only events of this session.</summary>
    public Guid? SessionId { get; init; }

    /// <summary>Only events whose session's metadata contains these entries (JSON containment): the tenant filter, applied
    /// in SQL.</summary>
    public IReadOnlyDictionary<string, object?>? SessionMetadata { get; init; }

    /// <summary>Only events created at or after this instant.</summary>
    public DateTimeOffset? CreatedAfter { get; init; }

    /// <summary>Rows per page, 1 to 1 000. Default 25.</summary>
    public int Limit { get; init; } = 25;

    /// <summary>The <see cref="ResultPage{T}.NextCursor"/> of the previous page, or <see langword="null"/> for the first page.</summary>
    public string? Cursor { get; init; }
}
