namespace AgentPg;

/// <summary>How failed tool executions are retried.</summary>
/// <remarks>
/// A tool that throws (anything but <see cref="ToolCancelException"/>, <see cref="ToolDiscardException"/> or
/// <see cref="ToolSnoozeException"/>) is retried until it has been attempted <see cref="MaxAttempts"/> times;
/// then its error is reported to Claude. The delay before attempt <c>n + 1</c> is <c>n⁴</c> seconds ± <see cref="Jitter"/>
/// (1 s, 16 s, 81 s …, at least 1 s), or immediate when <see cref="Jitter"/> is 0.
/// </remarks>
public sealed class ToolRetryOptions
{
    /// <summary>Gets or sets how many times a tool is attempted in total.</summary>
    /// <value>The default value is 2 (one retry). From 1 to 100.</value>
    public int MaxAttempts { get; set; } = 2;

    /// <summary>Gets or sets the random spread of the backoff, as a fraction of it (0 to 1). 0 retries immediately.</summary>
    /// <value>The default value is 0.</value>
    public double Jitter { get; set; }

    internal ToolRetryOptions Clone() => (ToolRetryOptions)MemberwiseClone();
}
