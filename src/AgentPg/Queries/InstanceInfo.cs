namespace AgentPg;

/// <summary>A registered worker instance, as <see cref="AgentPgClient.ListInstancesAsync"/> sees it.</summary>
public sealed record InstanceInfo
{
    /// <summary>The instance id (<see cref="AgentPgOptions.InstanceId"/>).</summary>
    public required string Id { get; init; }

    /// <summary>The instance's display name.</summary>
    public required string Name { get; init; }

    /// <summary>The host it runs on, when it reported one.</summary>
    public string? Hostname { get; init; }

    /// <summary>Its process id, when it reported one.</summary>
    public int? ProcessId { get; init; }

    /// <summary>The AgentPg version it runs.</summary>
    public string? Version { get; init; }

    /// <summary>Its streaming and batch run capacity.</summary>
    public int MaxConcurrentRuns { get; init; }

    /// <summary>Its tool execution capacity.</summary>
    public int MaxConcurrentTools { get; init; }

    /// <summary>When it registered.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Its last heartbeat.</summary>
    public DateTimeOffset LastHeartbeatAt { get; init; }

    /// <summary>Time since its last heartbeat, measured by the database clock (so clock skew between machines does not
    /// distort it).</summary>
    public TimeSpan HeartbeatAge { get; init; }

    /// <summary>Whether it holds the leader lease now.</summary>
    public bool IsLeader { get; init; }

    /// <summary>The tools it registered (ordinary tools; agent tools run on any instance).</summary>
    public IReadOnlyList<string> Tools { get; init; } = [];

    /// <summary>Runs it has claimed and not finished.</summary>
    public int ActiveRuns { get; init; }

    /// <summary>Tool executions it is running.</summary>
    public int ActiveToolExecutions { get; init; }
}
