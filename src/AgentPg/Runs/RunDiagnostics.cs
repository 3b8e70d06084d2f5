namespace AgentPg;

/// <summary>What stands between a run and the workers: returned by <see cref="AgentPgClient.GetRunDiagnosticsAsync"/>.</summary>
/// <remarks>
/// A pending run is claimed only by a live instance (a started client whose heartbeat is within
/// <see cref="AgentPgOptions.InstanceTtl"/>) that registered every tool the agent lists in <see cref="AgentDefinition.Tools"/>.
/// When no such instance exists the run waits, without failing, until one starts: <see cref="Problem"/> then says why and
/// what to do, and the leader instance logs the same condition as a warning.
/// </remarks>
public sealed record RunDiagnostics
{
    /// <summary>Gets the run.</summary>
    public required Guid RunId { get; init; }

    /// <summary>Gets the run's state when it was diagnosed.</summary>
    public required RunState State { get; init; }

    /// <summary>Gets whether the run uses the streaming or the Message Batches API.</summary>
    public required RunMode RunMode { get; init; }

    /// <summary>Gets the run's agent.</summary>
    public required Guid AgentId { get; init; }

    /// <summary>Gets the agent's name.</summary>
    public required string AgentName { get; init; }

    /// <summary>Gets the tools the agent lists; <see langword="null"/> when it uses every tool of the instance that runs it.</summary>
    public IReadOnlyList<string>? AgentTools { get; init; }

    /// <summary>Gets how many instances are live (started, with a heartbeat within <see cref="AgentPgOptions.InstanceTtl"/>).</summary>
    public required int LiveInstanceCount { get; init; }

    /// <summary>Gets the agent's tools that no live instance registered, in name order.</summary>
    public required IReadOnlyList<string> MissingTools { get; init; }

    /// <summary>Gets whether at least one live instance registered every tool of the agent, so it can claim the run.</summary>
    public required bool HasEligibleInstance { get; init; }

    /// <summary>Gets the earlier root run of the same session that a pending root run waits for (the root runs of one session
    /// never interleave), or <see langword="null"/>.</summary>
    public Guid? WaitingForRunId { get; init; }

    /// <summary>Gets the instance that holds the run, when it is claimed.</summary>
    public string? ClaimedByInstanceId { get; init; }

    /// <summary>Gets why a pending run cannot be claimed and how to fix it, or <see langword="null"/> when nothing blocks it
    /// (it is claimable, queued behind <see cref="WaitingForRunId"/>, in progress, or finished).</summary>
    public string? Problem { get; init; }

    /// <summary>Gets whether the run is pending and no live instance can claim it (<see cref="Problem"/> says why).</summary>
    public bool IsUnclaimable => Problem is not null;
}
