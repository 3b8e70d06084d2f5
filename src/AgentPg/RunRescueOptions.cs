namespace AgentPg;

/// <summary>How the leader rescues runs whose worker died or stopped making progress.</summary>
public sealed class RunRescueOptions
{
    /// <summary>Gets or sets how often the leader looks for work to rescue.</summary>
    /// <value>The default value is 1 minute. From 1 ms to 49.7 days.</value>
    public TimeSpan Interval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Gets or sets how long a run claimed by a live instance may go without progress before it is rescued.</summary>
    /// <value>The default value is 5 minutes. From 1 second to 49.7 days.</value>
    /// <remarks>A stream that keeps producing output is progress: every streamed text, thinking, signature, tool-input or
    /// citation delta counts (recorded at most every quarter of this timeout, and at most every 10 seconds). Work of an instance that stopped
    /// heartbeating is rescued after <see cref="AgentPgOptions.InstanceTtl"/> instead.</remarks>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Gets or sets how many times a run may be rescued before it fails with <c>error_type = rescue_failed</c>.</summary>
    /// <value>The default value is 3.</value>
    public int MaxAttempts { get; set; } = 3;

    internal RunRescueOptions Clone() => (RunRescueOptions)MemberwiseClone();
}
