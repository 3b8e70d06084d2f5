using System.Globalization;

namespace AgentPg.Soak;

/// <summary>Command-line settings of the soak.</summary>
internal sealed record SoakSettings
{
    public const string Usage = """
        usage: ./build.sh soak [--minutes N] [--workers N] [--rate RUNS_PER_S] [--batch-fraction F] [--cancel-fraction F]
                               [--fault-interval MIN_MS-MAX_MS] [--settle-seconds N] [--seed N]
        """;

    public double Minutes { get; init; } = 5;

    public int Workers { get; init; } = 3;

    public double RunsPerSecond { get; init; } = 3;

    public double BatchFraction { get; init; } = 0.3;

    public double CancelFraction { get; init; } = 0.15;

    public int MinFaultIntervalMs { get; init; } = 4000;

    public int MaxFaultIntervalMs { get; init; } = 12000;

    public int SettleSeconds { get; init; } = 120;

    public int Seed { get; init; } = Environment.TickCount;

    public static SoakSettings Parse(string[] args)
    {
        var settings = new SoakSettings();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value");
            settings = args[i] switch
            {
                "--minutes" => settings with { Minutes = double.Parse(Next(), CultureInfo.InvariantCulture) },
                "--workers" => settings with { Workers = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--rate" => settings with { RunsPerSecond = double.Parse(Next(), CultureInfo.InvariantCulture) },
                "--batch-fraction" => settings with { BatchFraction = double.Parse(Next(), CultureInfo.InvariantCulture) },
                "--cancel-fraction" => settings with { CancelFraction = double.Parse(Next(), CultureInfo.InvariantCulture) },
                "--settle-seconds" => settings with { SettleSeconds = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--seed" => settings with { Seed = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--fault-interval" => ParseInterval(settings, Next()),
                _ => throw new ArgumentException($"unknown argument {args[i]}"),
            };
        }

        if (settings.Minutes <= 0 || settings.Workers < 1 || settings.RunsPerSecond <= 0 || settings.SettleSeconds < 1)
        {
            throw new ArgumentException("--minutes, --rate must be positive; --workers, --settle-seconds at least 1");
        }

        return settings;
    }

    private static SoakSettings ParseInterval(SoakSettings settings, string value)
    {
        var parts = value.Split('-');
        var min = int.Parse(parts[0], CultureInfo.InvariantCulture);
        var max = parts.Length > 1 ? int.Parse(parts[1], CultureInfo.InvariantCulture) : min;
        return max < min || min < 1 ? throw new ArgumentException("--fault-interval MIN-MAX in ms, MIN ≤ MAX") : settings with { MinFaultIntervalMs = min, MaxFaultIntervalMs = max + 1 };
    }
}
