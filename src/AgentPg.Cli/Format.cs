using System.Buffers;
using System.Globalization;
using System.Text;

namespace AgentPg.Cli;

/// <summary>How values look in tables and text output.</summary>
internal static class Format
{
    // C0 controls but line feed and tab, DEL, C1 controls (U+009B is CSI on its own in many terminals), and Bidi.
    private static readonly SearchValues<char> s_controls = SearchValues.Create(
        "\u0000\u0001\u0002\u0003\u0004\u0005\u0006\u0007\u0008\u000B\u000C\u000D\u000E\u000F\u0010\u0011\u0012\u0013\u0014\u0015\u0016\u0017" +
        "\u0018\u0019\u001A\u001B\u001C\u001D\u001E\u001F\u007F\u0080\u0081\u0082\u0083\u0084\u0085\u0086\u0087\u0088\u0089\u008A\u008B\u008C" +
        "\u008D\u008E\u008F\u0090\u0091\u0092\u0093\u0094\u0095\u0096\u0097\u0098\u0099\u009A\u009B\u009C\u009D\u009E\u009F" +
        Bidi);

    // Bidirectional embeddings, overrides and isolates: a terminal that applies them shows the text after one reversed (an
    // approver could read another value than the one that runs), so they are shown as [U+202E].
    private const string Bidi = "\u202A\u202B\u202C\u202D\u202E\u2066\u2067\u2068\u2069";

    /// <summary>Text written by a model, a tool or an application (prompts, answers, tool outputs, errors, names) made inert for
    /// a terminal. Its escape sequences would otherwise reach the terminal: ESC and the C1 controls move the cursor, clear or
    /// rewrite the screen, set the window title, write the clipboard (OSC 52) or hide text; a carriage return overwrites the
    /// line. Each control is shown as a visible symbol (ESC as ␛, C1 controls as �, a bidirectional override, embedding or
    /// isolate as [U+202E]); carriage returns are dropped (CR LF reads as LF); line feeds and tabs stay.</summary>
    public static string Terminal(string? text)
    {
        if (string.IsNullOrEmpty(text))
        {
            return "";
        }

        var first = text.AsSpan().IndexOfAny(s_controls);
        if (first < 0)
        {
            return text;
        }

        var builder = new StringBuilder(text.Length + 8).Append(text, 0, first);
        foreach (var c in text.AsSpan(first))
        {
            if (!s_controls.Contains(c))
            {
                builder.Append(c);
            }
            else if (Bidi.Contains(c, StringComparison.Ordinal))
            {
                builder.Append("[U+").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture)).Append(']');
            }
            else if (c != '\r')
            {
                // Control Pictures (U+2400 + code) for C0, ␡ for DEL, the replacement character for C1.
                builder.Append(c < ' ' ? (char)(0x2400 + c) : c == '\u007F' ? '\u2421' : '\uFFFD');
            }
        }

        return builder.ToString();
    }

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

    /// <summary>Parses a positive duration option (90s, 15m, 2h, 7d).</summary>
    /// <exception cref="CliException">A usage error naming <paramref name="option"/> when <paramref name="text"/> is not one.</exception>
    public static TimeSpan PositiveDuration(string text, string option)
    {
        if (DurationSeconds(text.Trim()) is { } seconds && seconds > 0 && seconds < TimeSpan.MaxValue.TotalSeconds / 2)
        {
            return TimeSpan.FromSeconds(seconds);
        }

        throw CliException.Usage($"{option}: '{text}' is not a positive duration (90s, 15m, 2h, 7d).");
    }

    /// <summary>Parses --since (or another instant option, <paramref name="option"/>): a duration back from now (90s, 15m, 2h, 7d)
    /// or a timestamp (2026-11-28T10:00Z).</summary>
    public static DateTimeOffset Since(string text, TimeProvider time, string option = "--since")
    {
        var trimmed = text.Trim();
        if (DurationSeconds(trimmed) is { } seconds && seconds >= 0)
        {
            // In seconds first: a duration reaching back before year 1 (or infinite) is no time, and TimeSpan would overflow.
            var now = time.GetUtcNow();
            return seconds < (now - DateTimeOffset.MinValue).TotalSeconds - 1
                ? now - TimeSpan.FromSeconds(seconds)
                : throw CliException.Usage($"{option}: '{text}' reaches back before year 1: give a shorter duration or a timestamp.");
        }

        if (DateTimeOffset.TryParse(trimmed, CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
        {
            return at;
        }

        throw CliException.Usage($"{option}: '{text}' is neither a duration (90s, 15m, 2h, 7d) nor a timestamp (2026-11-28T10:00:00Z).");
    }

    /// <summary>A duration written as a number and a unit (s, m, h or d), in seconds (possibly negative or infinite: the
    /// callers decide), or <see langword="null"/> when the text is not one.</summary>
    private static double? DurationSeconds(string trimmed)
    {
        if (trimmed.Length < 2 || !double.TryParse(trimmed[..^1], NumberStyles.Float, CultureInfo.InvariantCulture, out var amount))
        {
            return null;
        }

        double? unit = char.ToLowerInvariant(trimmed[^1]) switch
        {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => null,
        };
        return amount * unit;
    }
}
