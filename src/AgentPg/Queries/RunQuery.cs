namespace AgentPg;

/// <summary>Filters of <see cref="AgentPgClient.ListRunsAsync"/>. Every filter left <see langword="null"/> matches all runs;
/// the filters that are set must all match.</summary>
public sealed record RunQuery
{
    /// <summary>Only these runs (for example to check that one run belongs to a tenant).</summary>
    public IReadOnlyList<Guid>? Ids { get; init; }

    /// <summary>Only runs in one of these states.</summary>
    public IReadOnlyList<RunState>? States { get; init; }

    /// <summary>Only runs of this agent.</summary>
    public Guid? AgentId { get; init; }

    /// <summary>Only runs of this session.</summary>
    public Guid? SessionId { get; init; }

    /// <summary>Only runs in this mode.</summary>
    public RunMode? Mode { get; init; }

    /// <summary>Only runs created at or after this instant.</summary>
    public DateTimeOffset? CreatedAfter { get; init; }

    /// <summary>Only runs created before this instant.</summary>
    public DateTimeOffset? CreatedBefore { get; init; }

    /// <summary>Only root runs (depth 0), not the runs agents delegated to other agents. Default <see langword="false"/>.</summary>
    public bool RootOnly { get; init; }

    /// <summary>Only runs whose session's metadata contains these entries (JSON containment, as
    /// <see cref="AgentPgClient.ListAgentsAsync"/>): the tenant filter of a multi-tenant application, applied in SQL.</summary>
    public IReadOnlyDictionary<string, object?>? SessionMetadata { get; init; }

    /// <summary>Rows per page, 1 to 1 000. Default 25.</summary>
    public int Limit { get; init; } = 25;

    /// <summary>The <see cref="ResultPage{T}.NextCursor"/> of the previous page, or <see langword="null"/> for the first page.</summary>
    public string? Cursor { get; init; }
}
