namespace AgentPg;

/// <summary>Thrown by a tool to run again later, without consuming an attempt (for example while waiting on a rate limit).</summary>
/// <remarks>The execution goes back to pending and is picked up again after <see cref="Duration"/>, by any instance.
/// Snoozes are deliberately not limited (a tool waiting on an external system decides how long to keep waiting): the run
/// stays in <c>pending_tools</c> meanwhile, and cancelling the run still ends it. There is no run timeout. A snooze gives
/// its attempt back, so <see cref="ToolContext.Attempt"/> is the same on every snoozed try: to give up, keep your own
/// count or deadline (keyed by <see cref="ToolContext.IdempotencyKey"/>, which every try of the execution shares) and throw
/// <see cref="ToolCancelException"/>. <see cref="ToolExecution.SnoozeCount"/> shows how often an execution snoozed.</remarks>
public sealed class ToolSnoozeException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="duration">How long to wait before the next attempt; negative values mean zero.</param>
    public ToolSnoozeException(TimeSpan duration)
        : this(duration, null)
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="duration">How long to wait before the next attempt; negative values mean zero.</param>
    /// <param name="reason">Why, for logs.</param>
    public ToolSnoozeException(TimeSpan duration, string? reason)
        : base(reason is null ? $"tool snoozed for {Clamp(duration)}" : $"tool snoozed for {Clamp(duration)}: {reason}")
    {
        Duration = Clamp(duration);
    }

    /// <summary>Gets how long to wait before the next attempt.</summary>
    public TimeSpan Duration { get; }

    private static TimeSpan Clamp(TimeSpan duration) => duration < TimeSpan.Zero ? TimeSpan.Zero : duration;
}
