namespace AgentPg.Soak;

/// <summary>The short timings every worker of the soak uses, so that each fault resolves within seconds.</summary>
internal static class SoakTimings
{
    public static readonly TimeSpan HeartbeatInterval = TimeSpan.FromMilliseconds(200);

    public static readonly TimeSpan InstanceTtl = TimeSpan.FromSeconds(2);

    public static readonly TimeSpan LeaderTtl = TimeSpan.FromSeconds(1);

    public static readonly TimeSpan RescueInterval = TimeSpan.FromSeconds(1);

    public static readonly TimeSpan RescueTimeout = TimeSpan.FromSeconds(30);

    public static readonly TimeSpan CleanupInterval = TimeSpan.FromSeconds(1);

    public static readonly TimeSpan PollInterval = TimeSpan.FromMilliseconds(500);

    public static readonly TimeSpan BatchPollInterval = TimeSpan.FromMilliseconds(500);

    public static void Apply(AgentPgOptions options)
    {
        options.HeartbeatInterval = HeartbeatInterval;
        options.InstanceTtl = InstanceTtl;
        options.LeaderTtl = LeaderTtl;
        options.CleanupInterval = CleanupInterval;
        options.RunRescue.Interval = RescueInterval;
        options.RunRescue.Timeout = RescueTimeout;
        // Chaos rescues the same run many times; the soak checks that nothing is lost, not that rescue gives up.
        options.RunRescue.MaxAttempts = 20;
        options.ToolRetry.MaxAttempts = 5;
        options.RunPollInterval = PollInterval;
        options.ToolPollInterval = PollInterval;
        options.BatchPollInterval = BatchPollInterval;
        options.MaxConcurrentStreamingRuns = 10;
        options.MaxConcurrentRuns = 10;
        options.MaxConcurrentTools = 10;
        options.ToolTimeout = TimeSpan.FromSeconds(30);
    }
}
