using System.Globalization;

namespace AgentPg.Cli;

/// <summary>How values look in tables and text output.</summary>
internal static class Format
{
    public static string Time(DateTimeOffset? value)
        => value is { } time ? time.UtcDateTime.ToString("yyyy-MM-dd HH:mm:ss'Z'", CultureInfo.InvariantCulture) : "";

    public static string Duration(TimeSpan value)
        => value.TotalSeconds < 1 ? $"{value.TotalMilliseconds:0} ms"
            : value.TotalMinutes < 1 ? $"{value.TotalSeconds:0.0} s"
            : value.TotalHours < 1 ? $"{(int)value.TotalMinutes} min {value.Seconds} s"
            : $"{(int)value.TotalHours} h {value.Minutes} min";

    public static string Tokens(Usage usage)
        => string.Create(CultureInfo.InvariantCulture, $"{usage.InputTokens} in / {usage.OutputTokens} out") +
           (usage.CacheReadInputTokens + usage.CacheCreationInputTokens > 0
               ? string.Create(CultureInfo.InvariantCulture, $" (cache {usage.CacheReadInputTokens} read, {usage.CacheCreationInputTokens} written)")
               : "");

    /// <summary>Lower-case snake_case, as the states are written in the database and the docs (pending_tools).</summary>
    public static string Name<TEnum>(TEnum value) where TEnum : struct, Enum
    {
        var text = value.ToString();
        var builder = new System.Text.StringBuilder(text.Length + 4);
        for (var i = 0; i < text.Length; i++)
        {
            if (char.IsUpper(text[i]) && i > 0)
            {
                builder.Append('_');
            }

            builder.Append(char.ToLowerInvariant(text[i]));
        }

        return builder.ToString();
    }

    /// <summary>Parses an enum name written in any case, with or without underscores or dashes (pending_tools, PendingTools).</summary>
    public static TEnum ParseName<TEnum>(string text, string option) where TEnum : struct, Enum
    {
        var compact = text.Replace("_", "", StringComparison.Ordinal).Replace("-", "", StringComparison.Ordinal);
        if (!int.TryParse(compact, out _) && Enum.TryParse<TEnum>(compact, ignoreCase: true, out var value))
        {
            return value;
        }

        throw CliException.Usage($"{option}: '{text}' is not one of {string.Join(", ", Enum.GetValues<TEnum>().Select(v => Name(v)))}.");
    }

    /// <summary>One line of at most <paramref name="max"/> characters.</summary>
    public static string Line(string? text, int max = 80)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "";
        }

        var line = text.ReplaceLineEndings(" ");
        return line.Length <= max ? line : string.Concat(line.AsSpan(0, max - 1), "…");
    }

    /// <summary>Parses --since: a duration back from now (90s, 15m, 2h, 7d) or a timestamp (2026-11-28T10:00Z).</summary>
    public static DateTimeOffset Since(string text, TimeProvider time)
    {
        var trimmed = text.Trim();
        if (trimmed.Length >= 2 && double.TryParse(trimmed[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var amount) && amount >= 0)
        {
            TimeSpan? span = char.ToLowerInvariant(trimmed[^1]) switch
            {
                's' => TimeSpan.FromSeconds(amount),
                'm' => TimeSpan.FromMinutes(amount),
                'h' => TimeSpan.FromHours(amount),
                'd' => TimeSpan.FromDays(amount),
                _ => null,
            };
            if (span is { } value)
            {
                return time.GetUtcNow() - value;
            }
        }

        if (DateTimeOffset.TryParse(trimmed, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
        {
            return at;
        }

        throw CliException.Usage($"--since: '{text}' is neither a duration (90s, 15m, 2h, 7d) nor a timestamp (2026-11-28T10:00:00Z).");
    }
}
