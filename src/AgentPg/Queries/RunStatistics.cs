namespace AgentPg;

/// <summary>Run counts and token usage over a recent window, for dashboards (<see cref="AgentPgClient.GetRunStatisticsAsync"/>).</summary>
public sealed record RunStatistics
{
    /// <summary>Start of the window (database clock).</summary>
    public DateTimeOffset Since { get; init; }

    /// <summary>End of the window (database clock, when the statistics were read).</summary>
    public DateTimeOffset Until { get; init; }

    /// <summary>Runs created in the window, by their state now.</summary>
    public IReadOnlyDictionary<RunState, int> CreatedByState { get; init; } = new Dictionary<RunState, int>();

    /// <summary>Runs waiting or in progress now (whenever they were created), by mode and state: the queue depth.</summary>
    public IReadOnlyList<QueueDepth> Queue { get; init; } = [];

    /// <summary>Runs created in the window, per bucket of their creation time with their outcome so far, oldest first; every
    /// bucket is present, empty ones with zeros. (Counting by creation keeps the read to one range of the created_at index;
    /// runs finish seconds after they start, so the chart reads as throughput.)</summary>
    public IReadOnlyList<RunStatisticsBucket> Buckets { get; init; } = [];
}

/// <summary>How many runs of one mode are in one non-terminal state.</summary>
/// <param name="Mode">The run mode.</param>
/// <param name="State">The state (pending, streaming, pending_tools, batch_…).</param>
/// <param name="Count">How many runs are in it now.</param>
public sealed record QueueDepth(RunMode Mode, RunState State, int Count);

/// <summary>Runs created in one time bucket, by outcome so far, and the tokens they used.</summary>
public sealed record RunStatisticsBucket
{
    /// <summary>Start of the bucket.</summary>
    public DateTimeOffset Start { get; init; }

    /// <summary>Runs created in the bucket that completed.</summary>
    public int Completed { get; init; }

    /// <summary>Runs created in the bucket that failed.</summary>
    public int Failed { get; init; }

    /// <summary>Runs created in the bucket that were cancelled.</summary>
    public int Cancelled { get; init; }

    /// <summary>Tokens used by the runs created in the bucket (input, output and cache).</summary>
    public Usage Usage { get; init; } = new();
}
