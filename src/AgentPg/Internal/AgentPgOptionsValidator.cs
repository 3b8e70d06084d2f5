using System.Globalization;
using AgentPg.Storage;

namespace AgentPg.Internal;

internal static class AgentPgOptionsValidator
{
    public static IReadOnlyList<string> Validate(AgentPgOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var errors = new List<string>();

        if (options.Schema is null || !SchemaName.IsValid(options.Schema))
        {
            errors.Add($"AgentPgOptions.Schema '{options.Schema}' is not a valid schema name: use 1 to {SchemaName.MaxLength} lowercase " +
                       "letters, digits or underscores, starting with a letter or an underscore (the name also prefixes NOTIFY " +
                       "channels, which PostgreSQL limits to 63 bytes), or leave the default 'public'.");
        }

        if (options.InstanceId is not null && (options.InstanceId.Length is 0 or > 127 || string.IsNullOrWhiteSpace(options.InstanceId) || !IsStorable(options.InstanceId)))
        {
            errors.Add($"AgentPgOptions.InstanceId must be 1 to 127 non-blank characters, none of them U+0000 or an unpaired surrogate (was {Describe(options.InstanceId)}); " +
                       "leave it null to get a new GUID per client.");
        }

        if (options.InstanceName is not null && (options.InstanceName.Length > 255 || string.IsNullOrWhiteSpace(options.InstanceName) || !IsStorable(options.InstanceName)))
        {
            errors.Add($"AgentPgOptions.InstanceName must be 1 to 255 non-blank characters, none of them U+0000 or an unpaired surrogate (was {Describe(options.InstanceName)}); " +
                       "leave it null to use the host name.");
        }

        if (options.BaseUrl is not null
            && (!Uri.TryCreate(options.BaseUrl, UriKind.Absolute, out var uri) || uri.Scheme is not ("http" or "https")))
        {
            errors.Add($"AgentPgOptions.BaseUrl '{options.BaseUrl}' is not an absolute http or https URL; use for example " +
                       "'https://api.anthropic.com' or leave it null for the SDK's default.");
        }

        if (options.ApiKey is not null && string.IsNullOrWhiteSpace(options.ApiKey))
        {
            errors.Add("AgentPgOptions.ApiKey is blank; set the key or leave it null to read ANTHROPIC_API_KEY.");
        }

        Positive(errors, options.MaxConcurrentRuns, nameof(AgentPgOptions.MaxConcurrentRuns), "10");
        Positive(errors, options.MaxConcurrentStreamingRuns, nameof(AgentPgOptions.MaxConcurrentStreamingRuns), "5");
        Positive(errors, options.MaxConcurrentTools, nameof(AgentPgOptions.MaxConcurrentTools), "50");
        Positive(errors, options.MaxAgentDepth, nameof(AgentPgOptions.MaxAgentDepth), "8");
        NotNegative(errors, options.MaxContinuations, nameof(AgentPgOptions.MaxContinuations), "3");
        NotNegative(errors, options.MaxModelRetries, nameof(AgentPgOptions.MaxModelRetries), "2");

        if (options.ModelUnavailableTimeout != TimeSpan.Zero && options.ModelUnavailableTimeout != Timeout.InfiniteTimeSpan
            && !InRange(options.ModelUnavailableTimeout, MinTimer))
        {
            errors.Add($"AgentPgOptions.ModelUnavailableTimeout must be TimeSpan.Zero (no waiting), between 1 ms and 49.7 days, or " +
                       $"Timeout.InfiniteTimeSpan (was {options.ModelUnavailableTimeout}); the default is TimeSpan.FromMinutes(5).");
        }

        if (options.MaxToolOutputLength is < MinToolOutputLength or > MaxToolOutputLength)
        {
            errors.Add($"AgentPgOptions.MaxToolOutputLength must be between 1 000 and 100 000 000 characters " +
                       $"(was {options.MaxToolOutputLength}); the default is 100 000, null sends every character.");
        }

        // Intervals drive PeriodicTimer, Task.Delay, WaitAsync and CancellationTokenSource: 1 ms to 49.7 days.
        Timer(errors, options.RunPollInterval, nameof(AgentPgOptions.RunPollInterval), "TimeSpan.FromSeconds(1)");
        Timer(errors, options.ToolPollInterval, nameof(AgentPgOptions.ToolPollInterval), "TimeSpan.FromMilliseconds(500)");
        Timer(errors, options.BatchPollInterval, nameof(AgentPgOptions.BatchPollInterval), "TimeSpan.FromSeconds(30)");
        Timer(errors, options.HeartbeatInterval, nameof(AgentPgOptions.HeartbeatInterval), "TimeSpan.FromSeconds(15)");
        Timer(errors, options.CleanupInterval, nameof(AgentPgOptions.CleanupInterval), "TimeSpan.FromMinutes(1)");
        Timer(errors, options.ToolTimeout, nameof(AgentPgOptions.ToolTimeout), "TimeSpan.FromMinutes(5)");
        var leaderTtlValid = Duration(errors, options.LeaderTtl, nameof(AgentPgOptions.LeaderTtl), MinLeaderTtl, "100 ms", "TimeSpan.FromSeconds(30)",
            " (the lease is refreshed every LeaderTtl / 2: a shorter lease expires between two refreshes on a busy database and " +
            "leadership flaps)");
        var instanceTtlValid = Duration(errors, options.InstanceTtl, nameof(AgentPgOptions.InstanceTtl), MinTimer, "1 ms", "TimeSpan.FromMinutes(2)", "");

        // Ages the leader compares with the database clock (now() - age), not timers: no 49.7-day limit.
        if (options.RunEventRetention <= TimeSpan.Zero || options.RunEventRetention > MaxAge)
        {
            errors.Add($"AgentPgOptions.RunEventRetention must be positive and at most {MaxAgeText} (was {options.RunEventRetention}); " +
                       "for example TimeSpan.FromHours(24) (the default) or TimeSpan.FromDays(90).");
        }

        if (options.ApprovalTimeout is { } approvalTimeout && (approvalTimeout <= TimeSpan.Zero || approvalTimeout > MaxAge))
        {
            errors.Add($"AgentPgOptions.ApprovalTimeout must be positive and at most {MaxAgeText} (was {approvalTimeout}); " +
                       "leave it null to wait for decisions forever.");
        }

        if (instanceTtlValid && InRange(options.HeartbeatInterval, MinTimer) && options.InstanceTtl <= options.HeartbeatInterval)
        {
            errors.Add($"AgentPgOptions.InstanceTtl ({options.InstanceTtl}) must be longer than AgentPgOptions.HeartbeatInterval " +
                       $"({options.HeartbeatInterval}), otherwise live instances are evicted between two heartbeats; " +
                       "a TTL of several heartbeat intervals is typical.");
        }

        if (leaderTtlValid && instanceTtlValid && options.LeaderTtl > options.InstanceTtl)
        {
            errors.Add($"AgentPgOptions.LeaderTtl ({options.LeaderTtl}) must not be longer than AgentPgOptions.InstanceTtl " +
                       $"({options.InstanceTtl}): the leader rescues the work of dead instances, so when the leader itself dies its work " +
                       "waits for its lease to expire; a lease longer than the TTL would delay that rescue beyond InstanceTtl. " +
                       "A lease of a quarter of the TTL is typical (30 seconds and 2 minutes by default).");
        }

        if (options.Telemetry is null)
        {
            errors.Add("AgentPgOptions.Telemetry is null; leave the default instance or set a new TelemetryOptions().");
        }

        if (options.RunRescue is null)
        {
            errors.Add("AgentPgOptions.RunRescue is null; leave the default instance or set a new RunRescueOptions().");
        }
        else
        {
            Timer(errors, options.RunRescue.Interval, "RunRescue.Interval", "TimeSpan.FromMinutes(1)");
            Duration(errors, options.RunRescue.Timeout, "RunRescue.Timeout", MinRescueTimeout, "1 second", "TimeSpan.FromMinutes(5)",
                " (a live stream's first event, and each later progress mark, may take that long: a shorter timeout rescues healthy " +
                "runs and pays for their answers twice)");
            Positive(errors, options.RunRescue.MaxAttempts, "RunRescue.MaxAttempts", "3");
        }

        if (options.ToolRetry is null)
        {
            errors.Add("AgentPgOptions.ToolRetry is null; leave the default instance or set a new ToolRetryOptions().");
        }
        else
        {
            if (options.ToolRetry.MaxAttempts is < 1 or > MaxToolAttempts)
            {
                errors.Add($"AgentPgOptions.ToolRetry.MaxAttempts must be between 1 and {MaxToolAttempts} (was {options.ToolRetry.MaxAttempts}): " +
                           "with jitter the wait before attempt n is n⁴ seconds, already more than 3 years before attempt 100; the default is 2.");
            }
            if (double.IsNaN(options.ToolRetry.Jitter) || options.ToolRetry.Jitter is < 0 or > 1)
            {
                errors.Add($"AgentPgOptions.ToolRetry.Jitter must be between 0 and 1 (was {options.ToolRetry.Jitter.ToString(CultureInfo.InvariantCulture)}); " +
                           "0 retries immediately, 0.1 spreads the n⁴-second backoff by ±10 %.");
            }
        }

        if (options.PromptCaching is not (PromptCacheMode.Automatic or PromptCacheMode.Off))
        {
            errors.Add($"AgentPgOptions.PromptCaching has the undefined value {(int)options.PromptCaching}; use PromptCacheMode.Automatic or PromptCacheMode.Off.");
        }

        if (options.PromptCacheTtl is { } ttl && ttl != TimeSpan.FromMinutes(5) && ttl != TimeSpan.FromHours(1))
        {
            errors.Add($"AgentPgOptions.PromptCacheTtl must be 5 minutes or 1 hour, the two lifetimes Claude's prompt cache offers (was {ttl}); " +
                       "leave it null for 5 minutes on streaming runs and 1 hour on batch runs.");
        }

        if (options.ModelPrices is null)
        {
            errors.Add("AgentPgOptions.ModelPrices is null; leave the default (empty) dictionary or add a ModelPrice per model.");
        }
        else if (options.ModelPrices.FirstOrDefault(p => string.IsNullOrEmpty(p.Key) || p.Value is null) is { Key: { } badModel })
        {
            errors.Add($"AgentPgOptions.ModelPrices has the model '{badModel}' with no price, or an empty model name; give each model a ModelPrice.");
        }

        if (options.Compaction is null)
        {
            errors.Add("AgentPgOptions.Compaction is null; leave the default instance or set a new CompactionOptions().");
        }
        else
        {
            errors.AddRange(CompactionOptionsValidator.Validate(options.Compaction, "AgentPgOptions.Compaction."));
        }

        if (options.TimeProvider is null)
        {
            errors.Add("AgentPgOptions.TimeProvider is null; leave the default TimeProvider.System or set a TimeProvider.");
        }

        return errors;
    }

    private static void Positive(List<string> errors, int value, string name, string example)
    {
        if (value <= 0)
        {
            errors.Add($"AgentPgOptions.{name} must be greater than zero (was {value}); the default is {example}.");
        }
    }

    private static void NotNegative(List<string> errors, int value, string name, string example)
    {
        if (value < 0)
        {
            errors.Add($"AgentPgOptions.{name} must not be negative (was {value}); the default is {example}.");
        }
    }

    /// <summary>The shortest period .NET timers accept (PeriodicTimer rejects anything under a millisecond).</summary>
    internal static readonly TimeSpan MinTimer = TimeSpan.FromMilliseconds(1);

    /// <summary>The longest period PeriodicTimer, Task.Delay, Task.WaitAsync and CancellationTokenSource accept
    /// (uint.MaxValue - 1 milliseconds, about 49.7 days).</summary>
    internal static readonly TimeSpan MaxTimer = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    /// <summary>The longest age the leader subtracts from the database clock (RunEventRetention, ApprovalTimeout): a
    /// century, far inside PostgreSQL's timestamp range.</summary>
    internal static readonly TimeSpan MaxAge = TimeSpan.FromDays(36_500);

    private const string MaxAgeText = "36 500 days (100 years)";

    internal static readonly TimeSpan MinLeaderTtl = TimeSpan.FromMilliseconds(100);

    internal static readonly TimeSpan MinRescueTimeout = TimeSpan.FromSeconds(1);

    internal const int MaxToolAttempts = 100;

    private const int MinToolOutputLength = 1_000;

    private const int MaxToolOutputLength = 100_000_000;

    private static bool InRange(TimeSpan value, TimeSpan min) => value >= min && value <= MaxTimer;

    private static void Timer(List<string> errors, TimeSpan value, string name, string example)
        => Duration(errors, value, name, MinTimer, "1 ms", example, " (the range .NET timers accept)");

    private static bool Duration(List<string> errors, TimeSpan value, string name, TimeSpan min, string minText, string example, string reason)
    {
        if (InRange(value, min))
        {
            return true;
        }

        errors.Add($"AgentPgOptions.{name} must be between {minText} and 49.7 days{reason} (was {value}); for example {example}.");
        return false;
    }

    private static string Describe(string value) => value.Length == 0 ? "empty"
        : IsStorable(value) ? $"{value.Length} characters"
        : $"{value.Length} characters with U+0000 or an unpaired surrogate, which PostgreSQL cannot store";

    // Instance ids and names are stored as text (Nul.cs).
    private static bool IsStorable(string value) => !value.Contains('\0', StringComparison.Ordinal) && Nul.IndexOfUnpairedSurrogate(value) < 0;
}
