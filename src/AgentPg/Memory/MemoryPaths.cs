using System.Globalization;
using System.Text;

namespace AgentPg.Memory;

/// <summary>The paths of Claude's memory tool: <c>/memories</c> and what is under it. Paths come from a model (or an
/// application) and are only ever compared and stored as text — never used as a file system path — but are still held to a
/// strict form so that one file has one name.</summary>
internal static class MemoryPaths
{
    /// <summary>The memory directory, the root of every store.</summary>
    public const string Root = "/memories";

    /// <summary>The longest path accepted, in characters.</summary>
    public const int MaxLength = 1024;

    /// <summary>The longest name of one file or directory, in characters.</summary>
    public const int MaxSegmentLength = 255;

    /// <summary>The normal form of <paramref name="path"/>: <c>/memories</c> followed by its non-empty segments joined with one
    /// <c>/</c> (repeated and trailing slashes and <c>.</c> segments removed). Null, with the reason in
    /// <paramref name="problem"/>, for a path that is not under <c>/memories</c>, climbs out of it (<c>..</c>, also
    /// percent-encoded), holds a backslash, a control character (U+0000 included), an invisible format character or an
    /// unpaired surrogate, or is too long. Names are in Unicode normalization form C.</summary>
    public static string? Normalize(string? path, out string? problem)
    {
        problem = null;
        if (string.IsNullOrEmpty(path))
        {
            problem = "The path is empty; memory paths start with /memories, for example /memories/notes.md.";
            return null;
        }

        if (path.Length > MaxLength)
        {
            problem = $"The path is {path.Length} characters long; memory paths are at most {MaxLength} characters.";
            return null;
        }

        if (Unprintable(path) >= 0)
        {
            problem = $"The path {Printable(path)} contains a control, invisible or invalid character; use printable characters only.";
            return null;
        }

        // Composed and decomposed accents (é as one character or as e + U+0301) look the same: one name.
        path = path.Normalize(NormalizationForm.FormC);

        if (path.Contains('\\', StringComparison.Ordinal))
        {
            problem = $"The path {path} contains a backslash; separate directories with /.";
            return null;
        }

        if (!path.StartsWith(Root, StringComparison.Ordinal) || (path.Length > Root.Length && path[Root.Length] != '/'))
        {
            problem = $"Path must start with /memories, got: {path}";
            return null;
        }

        var segments = new List<string>();
        foreach (var segment in path[Root.Length..].Split('/', StringSplitOptions.RemoveEmptyEntries))
        {
            var decoded = Decoded(segment);
            if (decoded is "..")
            {
                problem = $"Path {path} would escape /memories directory";
                return null;
            }

            if (decoded is ".")
            {
                continue;
            }

            if (segment.Length > MaxSegmentLength)
            {
                problem = $"The path {path} has a name of {segment.Length} characters; names are at most {MaxSegmentLength} characters.";
                return null;
            }

            segments.Add(segment);
        }

        return segments.Count == 0 ? Root : Root + "/" + string.Join('/', segments);
    }

    /// <summary>The normal form of a path given by the application, or <see cref="ArgumentException"/> saying what is wrong.</summary>
    public static string NormalizeArgument(string? path, string parameterName)
        => Normalize(path, out var problem) ?? throw new ArgumentException(problem, parameterName);

    private static string Decoded(string segment)
    {
        try
        {
            return segment.Contains('%', StringComparison.Ordinal) ? Uri.UnescapeDataString(segment) : segment;
        }
        catch (UriFormatException)
        {
            return segment;
        }
    }

    /// <summary>The index of the first character that has no place in a name, or -1: control characters; U+FFFD, which
    /// AgentPg stores for Claude's U+0000 and unpaired surrogates (Internal/Nul.cs) and which never names a file on purpose;
    /// invisible format characters (zero-width spaces and joiners, direction overrides, U+FEFF), with which two names that look
    /// the same differ; and unpaired surrogates, which are not Unicode and cannot be stored.</summary>
    private static int Unprintable(string path)
    {
        for (var i = 0; i < path.Length; i++)
        {
            var c = path[i];
            if (char.IsHighSurrogate(c) && i + 1 < path.Length && char.IsLowSurrogate(path[i + 1]))
            {
                if (CharUnicodeInfo.GetUnicodeCategory(path, i) == UnicodeCategory.Format)
                {
                    return i;
                }

                i++;
                continue;
            }

            if (char.IsControl(c) || char.IsSurrogate(c) || c == '\uFFFD' || CharUnicodeInfo.GetUnicodeCategory(c) == UnicodeCategory.Format)
            {
                return i;
            }
        }

        return -1;
    }

    private static string Printable(string path)
    {
        var printable = new StringBuilder(path.Length);
        for (var rest = path; rest.Length > 0;)
        {
            var bad = Unprintable(rest);
            if (bad < 0)
            {
                printable.Append(rest);
                break;
            }

            printable.Append(rest.AsSpan(0, bad)).Append('?');
            rest = rest[(bad + 1)..];
        }

        return printable.ToString();
    }
}
