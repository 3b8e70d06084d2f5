using System.Globalization;

namespace AgentPg.Internal;

/// <summary>Durations as messages and logs show them: "45 s", "2.5 min", "infinite".</summary>
internal static class Durations
{
    public static string Format(TimeSpan duration)
        => duration == Timeout.InfiniteTimeSpan ? "infinite"
            : duration >= TimeSpan.FromMinutes(1) ? $"{duration.TotalMinutes.ToString("0.#", CultureInfo.InvariantCulture)} min"
            : $"{duration.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture)} s";
}
