using Npgsql;

namespace AgentPg.Tests.Options;

public sealed class AgentPgOptionsTests
{
    private static readonly NpgsqlDataSource s_dataSource = NpgsqlDataSource.Create("Host=127.0.0.1;Database=unused");

    public static TheoryData<string, Action<AgentPgOptions>> InvalidOptions() => new()
    {
        { "Schema", o => o.Schema = "My-Schema" },
        { "Schema", o => o.Schema = "" },
        { "Schema", o => o.Schema = new string('a', 41) },
        { "Schema", o => o.Schema = "pg_agents" },
        { "InstanceId", o => o.InstanceId = "" },
        { "InstanceId", o => o.InstanceId = new string('x', 128) },
        { "InstanceName", o => o.InstanceName = " " },
        { "InstanceId", o => o.InstanceId = "worker\0" },
        { "InstanceName", o => o.InstanceName = "host\uD800" },
        { "BaseUrl", o => o.BaseUrl = "not a url" },
        { "BaseUrl", o => o.BaseUrl = "ftp://example.com" },
        { "ApiKey", o => o.ApiKey = " " },
        { "MaxConcurrentRuns", o => o.MaxConcurrentRuns = 0 },
        { "MaxConcurrentStreamingRuns", o => o.MaxConcurrentStreamingRuns = -1 },
        { "MaxConcurrentTools", o => o.MaxConcurrentTools = 0 },
        { "MaxAgentDepth", o => o.MaxAgentDepth = 0 },
        { "MaxContinuations", o => o.MaxContinuations = -1 },
        { "MaxModelRetries", o => o.MaxModelRetries = -1 },
        { "ModelUnavailableTimeout", o => o.ModelUnavailableTimeout = TimeSpan.FromSeconds(-5) },
        { "ModelUnavailableTimeout", o => o.ModelUnavailableTimeout = TimeSpan.FromTicks(1) },
        { "ModelUnavailableTimeout", o => o.ModelUnavailableTimeout = TimeSpan.FromDays(60) },
        { "RunPollInterval", o => o.RunPollInterval = TimeSpan.Zero },
        { "ToolPollInterval", o => o.ToolPollInterval = TimeSpan.FromSeconds(-1) },
        { "BatchPollInterval", o => o.BatchPollInterval = TimeSpan.Zero },
        { "HeartbeatInterval", o => o.HeartbeatInterval = TimeSpan.Zero },
        { "LeaderTtl", o => o.LeaderTtl = TimeSpan.Zero },
        { "InstanceTtl", o => o.InstanceTtl = TimeSpan.Zero },
        { "InstanceTtl", o => (o.InstanceTtl, o.LeaderTtl) = (TimeSpan.FromSeconds(10), TimeSpan.FromSeconds(5)) },
        { "CleanupInterval", o => o.CleanupInterval = TimeSpan.Zero },
        { "ToolTimeout", o => o.ToolTimeout = TimeSpan.Zero },
        { "RunRescue.Interval", o => o.RunRescue.Interval = TimeSpan.Zero },
        { "RunRescue.Timeout", o => o.RunRescue.Timeout = TimeSpan.Zero },
        { "RunRescue.MaxAttempts", o => o.RunRescue.MaxAttempts = 0 },
        { "RunRescue", o => o.RunRescue = null! },
        { "ToolRetry.MaxAttempts", o => o.ToolRetry.MaxAttempts = 0 },
        { "ToolRetry.Jitter", o => o.ToolRetry.Jitter = 1.5 },
        { "ToolRetry.Jitter", o => o.ToolRetry.Jitter = double.NaN },
        { "ToolRetry", o => o.ToolRetry = null! },
        { "TimeProvider", o => o.TimeProvider = null! },

        // D12: what timers and the database accept, and the relations between the options.
        { "HeartbeatInterval", o => o.HeartbeatInterval = TimeSpan.FromMicroseconds(500) },
        { "RunPollInterval", o => o.RunPollInterval = TimeSpan.FromDays(60) },
        { "ToolPollInterval", o => o.ToolPollInterval = TimeSpan.FromTicks(1) },
        { "BatchPollInterval", o => o.BatchPollInterval = TimeSpan.FromDays(50) },
        { "CleanupInterval", o => o.CleanupInterval = TimeSpan.FromMicroseconds(999) },
        { "ToolTimeout", o => o.ToolTimeout = TimeSpan.MaxValue },
        { "ToolTimeout", o => o.ToolTimeout = TimeSpan.FromMicroseconds(10) },
        { "LeaderTtl", o => o.LeaderTtl = TimeSpan.FromMilliseconds(50) },
        { "LeaderTtl", o => o.LeaderTtl = TimeSpan.FromMinutes(3) },
        { "InstanceTtl", o => o.InstanceTtl = TimeSpan.FromDays(60) },
        { "RunRescue.Interval", o => o.RunRescue.Interval = TimeSpan.FromDays(60) },
        { "RunRescue.Timeout", o => o.RunRescue.Timeout = TimeSpan.FromMilliseconds(500) },
        { "RunRescue.Timeout", o => o.RunRescue.Timeout = TimeSpan.MaxValue },
        { "ToolRetry.MaxAttempts", o => o.ToolRetry.MaxAttempts = 101 },
        { "RunEventRetention", o => o.RunEventRetention = TimeSpan.Zero },
        { "RunEventRetention", o => o.RunEventRetention = TimeSpan.MaxValue },
        { "ApprovalTimeout", o => o.ApprovalTimeout = TimeSpan.FromDays(36_501) },
        { "MaxToolOutputLength", o => o.MaxToolOutputLength = 999 },
        { "MaxToolOutputLength", o => o.MaxToolOutputLength = 0 },
        { "MaxToolOutputLength", o => o.MaxToolOutputLength = 100_000_001 },
    };

    public static TheoryData<string, Action<AgentPgOptions>, string> RangeMessages() => new()
    {
        { "HeartbeatInterval", o => o.HeartbeatInterval = TimeSpan.FromMicroseconds(500),
            "AgentPgOptions.HeartbeatInterval must be between 1 ms and 49.7 days (the range .NET timers accept) (was 00:00:00.0005000)" },
        { "RunPollInterval", o => o.RunPollInterval = TimeSpan.FromDays(60),
            "AgentPgOptions.RunPollInterval must be between 1 ms and 49.7 days (the range .NET timers accept) (was 60.00:00:00)" },
        { "LeaderTtl", o => o.LeaderTtl = TimeSpan.FromMilliseconds(50), "AgentPgOptions.LeaderTtl must be between 100 ms and 49.7 days" },
        { "LeaderTtl", o => o.LeaderTtl = TimeSpan.FromMinutes(3),
            "AgentPgOptions.LeaderTtl (00:03:00) must not be longer than AgentPgOptions.InstanceTtl (00:02:00)" },
        { "RunRescue.Timeout", o => o.RunRescue.Timeout = TimeSpan.FromMilliseconds(500),
            "AgentPgOptions.RunRescue.Timeout must be between 1 second and 49.7 days" },
        { "ToolRetry.MaxAttempts", o => o.ToolRetry.MaxAttempts = 101, "AgentPgOptions.ToolRetry.MaxAttempts must be between 1 and 100 (was 101)" },
        { "ModelUnavailableTimeout", o => o.ModelUnavailableTimeout = TimeSpan.FromSeconds(-5),
            "AgentPgOptions.ModelUnavailableTimeout must be TimeSpan.Zero (no waiting), between 1 ms and 49.7 days, or Timeout.InfiniteTimeSpan (was -00:00:05)" },
        { "MaxToolOutputLength", o => o.MaxToolOutputLength = -1,
            "AgentPgOptions.MaxToolOutputLength must be between 1 000 and 100 000 000 characters (was -1)" },
        { "RunEventRetention", o => o.RunEventRetention = TimeSpan.FromDays(36_501),
            "AgentPgOptions.RunEventRetention must be positive and at most 36 500 days (100 years) (was 36501.00:00:00)" },
    };

    [Fact]
    public void Validate_RunEventRetentionLongerThanTimersAllow_IsAccepted()
    {
        // An age compared with the database clock, not a timer: 90 days was refused "(the range .NET timers accept)".
        Assert.Empty(new AgentPgOptions { RunEventRetention = TimeSpan.FromDays(90) }.Validate());
        Assert.Empty(new AgentPgOptions { RunEventRetention = TimeSpan.FromDays(36_500), ApprovalTimeout = TimeSpan.FromDays(36_500) }.Validate());
    }

    [Fact]
    public void Validate_ModelUnavailableTimeout_ZeroAndInfiniteAreAccepted()
    {
        Assert.Empty(new AgentPgOptions { ModelUnavailableTimeout = TimeSpan.Zero }.Validate());
        Assert.Empty(new AgentPgOptions { ModelUnavailableTimeout = Timeout.InfiniteTimeSpan }.Validate());
        Assert.Equal(TimeSpan.FromMinutes(5), new AgentPgOptions().ModelUnavailableTimeout);
    }

    [Theory]
    [MemberData(nameof(RangeMessages))]
    public void Create_OutOfRange_MessageNamesTheOptionAndTheAcceptedRange(string field, Action<AgentPgOptions> breakIt, string message)
    {
        var options = new AgentPgOptions();
        breakIt(options);

        var ex = Assert.Throws<ArgumentException>(() => AgentPgClient.Create(s_dataSource, options));

        Assert.Contains(message, ex.Message, StringComparison.Ordinal);
        Assert.Contains(field, Assert.Single(options.Validate()), StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_TheLimitsThemselves_AreAccepted()
    {
        var longest = TimeSpan.FromMilliseconds(uint.MaxValue - 1);
        var shortest = new AgentPgOptions
        {
            RunPollInterval = TimeSpan.FromMilliseconds(1),
            ToolPollInterval = TimeSpan.FromMilliseconds(1),
            BatchPollInterval = TimeSpan.FromMilliseconds(1),
            HeartbeatInterval = TimeSpan.FromMilliseconds(1),
            CleanupInterval = TimeSpan.FromMilliseconds(1),
            ToolTimeout = TimeSpan.FromMilliseconds(1),
            LeaderTtl = TimeSpan.FromMilliseconds(100),
            InstanceTtl = TimeSpan.FromMilliseconds(100),
        };
        shortest.RunRescue.Interval = TimeSpan.FromMilliseconds(1);
        shortest.RunRescue.Timeout = TimeSpan.FromSeconds(1);
        var longestOptions = new AgentPgOptions
        {
            RunPollInterval = longest,
            ToolPollInterval = longest,
            BatchPollInterval = longest,
            HeartbeatInterval = longest - TimeSpan.FromMilliseconds(1),
            CleanupInterval = longest,
            ToolTimeout = longest,
            LeaderTtl = longest,
            InstanceTtl = longest,
        };
        longestOptions.RunRescue.Interval = longest;
        longestOptions.RunRescue.Timeout = longest;
        longestOptions.ToolRetry.MaxAttempts = 100;

        Assert.Empty(shortest.Validate());
        Assert.Empty(longestOptions.Validate());
    }

    [Theory]
    [MemberData(nameof(InvalidOptions))]
    public void Create_InvalidField_ThrowsAMessageNamingIt(string field, Action<AgentPgOptions> breakIt)
    {
        var options = new AgentPgOptions();
        breakIt(options);

        var ex = Assert.Throws<ArgumentException>(() => AgentPgClient.Create(s_dataSource, options));

        Assert.Contains("AgentPgOptions." + field, ex.Message, StringComparison.Ordinal);
        Assert.Equal("options", ex.ParamName);
        Assert.Single(options.Validate());
    }

    [Fact]
    public void Create_SeveralInvalidFields_ListsEachOnItsOwnLine()
    {
        var options = new AgentPgOptions { MaxConcurrentTools = 0, LeaderTtl = TimeSpan.Zero };

        var ex = Assert.Throws<ArgumentException>(() => AgentPgClient.Create(s_dataSource, options));

        Assert.Contains("AgentPgOptions.MaxConcurrentTools", ex.Message, StringComparison.Ordinal);
        Assert.Contains("AgentPgOptions.LeaderTtl", ex.Message, StringComparison.Ordinal);
        Assert.Equal(2, options.Validate().Count);
    }

    [Fact]
    public void Defaults_AreValidAndMatchTheDocumentedValues()
    {
        var o = new AgentPgOptions();

        Assert.Empty(o.Validate());
        Assert.Equal("public", o.Schema);
        Assert.False(o.MigrateOnStart);
        Assert.Equal(10, o.MaxConcurrentRuns);
        Assert.Equal(5, o.MaxConcurrentStreamingRuns);
        Assert.Equal(50, o.MaxConcurrentTools);
        Assert.Equal(TimeSpan.FromSeconds(1), o.RunPollInterval);
        Assert.Equal(TimeSpan.FromMilliseconds(500), o.ToolPollInterval);
        Assert.Equal(TimeSpan.FromSeconds(30), o.BatchPollInterval);
        Assert.Equal(TimeSpan.FromSeconds(15), o.HeartbeatInterval);
        Assert.Equal(TimeSpan.FromSeconds(30), o.LeaderTtl);
        Assert.Equal(TimeSpan.FromMinutes(2), o.InstanceTtl);
        Assert.Equal(TimeSpan.FromMinutes(1), o.CleanupInterval);
        Assert.Equal(TimeSpan.FromMinutes(1), o.RunRescue.Interval);
        Assert.Equal(TimeSpan.FromMinutes(5), o.RunRescue.Timeout);
        Assert.Equal(3, o.RunRescue.MaxAttempts);
        Assert.Equal(2, o.ToolRetry.MaxAttempts);
        Assert.Equal(0, o.ToolRetry.Jitter);
        Assert.Equal(TimeSpan.FromMinutes(5), o.ToolTimeout);
        Assert.Equal(8, o.MaxAgentDepth);
        Assert.Equal(100_000, o.MaxToolOutputLength);
        Assert.Equal(3, o.MaxContinuations);
        Assert.Equal(2, o.MaxModelRetries);
        Assert.False(o.ExtendedContext);
        Assert.Same(TimeProvider.System, o.TimeProvider);
    }

    [Fact]
    public void Create_CopiesTheOptionsAndResolvesDefaults()
    {
        var options = new AgentPgOptions { ApiKey = "k" };

        var a = AgentPgClient.Create(s_dataSource, options);
        var b = AgentPgClient.Create(s_dataSource, options);
        options.MaxConcurrentTools = 1;

        Assert.NotEqual(a.InstanceId, b.InstanceId);
        Assert.True(Guid.TryParse(a.InstanceId, out _));
        Assert.False(string.IsNullOrEmpty(a.Options.InstanceName));
        Assert.Equal(50, a.Options.MaxConcurrentTools);
        Assert.Null(options.InstanceId);
    }

    [Fact]
    public void Create_NullArguments_Throw()
    {
        Assert.Throws<ArgumentNullException>(() => AgentPgClient.Create(null!, new AgentPgOptions()));
        Assert.Throws<ArgumentNullException>(() => AgentPgClient.Create(s_dataSource, null!));
    }
}
