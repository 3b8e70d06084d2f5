namespace AgentPg;

/// <summary>Filters of <see cref="AgentPgClient.ListSessionsAsync"/>. Every filter left <see langword="null"/> matches all
/// sessions; the filters that are set must all match.</summary>
public sealed record SessionQuery
{
    /// <summary>Only these sessions (for example to check that one session belongs to a tenant).</summary>
    public IReadOnlyList<Guid>? Ids { get; init; }

    /// <summary>Only sessions whose metadata contains these entries (JSON containment): the tenant filter, applied in SQL.</summary>
    public IReadOnlyDictionary<string, object?>? Metadata { get; init; }

    /// <summary>Only root sessions (no parent session). Default <see langword="false"/>.</summary>
    public bool RootOnly { get; init; }

    /// <summary>Only sessions created at or after this instant.</summary>
    public DateTimeOffset? CreatedAfter { get; init; }

    /// <summary>Only sessions created before this instant.</summary>
    public DateTimeOffset? CreatedBefore { get; init; }

    /// <summary>Rows per page, 1 to 1 000. Default 25.</summary>
    public int Limit { get; init; } = 25;

    /// <summary>The <see cref="ResultPage{T}.NextCursor"/> of the previous page, or <see langword="null"/> for the first page.</summary>
    public string? Cursor { get; init; }
}
