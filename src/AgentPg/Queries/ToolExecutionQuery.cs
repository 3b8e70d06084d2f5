namespace AgentPg;

/// <summary>Filters of <see cref="AgentPgClient.ListToolExecutionsAsync"/>. Every filter left <see langword="null"/> matches
/// all tool executions; the filters that are set must all match.</summary>
public sealed record ToolExecutionQuery
{
    /// <summary>Only these executions (for example to check that one execution belongs to a tenant).</summary>
    public IReadOnlyList<Guid>? Ids { get; init; }

    /// <summary>Only executions of this run.</summary>
    public Guid? RunId { get; init; }

    /// <summary>Only executions of this tool (exact name).</summary>
    public string? ToolName { get; init; }

    /// <summary>Only executions in one of these states.</summary>
    public IReadOnlyList<ToolExecutionState>? States { get; init; }

    /// <summary>Only agent tools (<see langword="true"/>) or only ordinary tools (<see langword="false"/>).</summary>
    public bool? IsAgentTool { get; init; }

    /// <summary>Only executions created at or after this instant.</summary>
    public DateTimeOffset? CreatedAfter { get; init; }

    /// <summary>Only executions created before this instant.</summary>
    public DateTimeOffset? CreatedBefore { get; init; }

    /// <summary>Only executions whose run's session metadata contains these entries: the tenant filter, applied in SQL.</summary>
    public IReadOnlyDictionary<string, object?>? SessionMetadata { get; init; }

    /// <summary>Rows per page, 1 to 1 000. Default 25.</summary>
    public int Limit { get; init; } = 25;

    /// <summary>The <see cref="ResultPage{T}.NextCursor"/> of the previous page, or <see langword="null"/> for the first page.</summary>
    public string? Cursor { get; init; }
}
