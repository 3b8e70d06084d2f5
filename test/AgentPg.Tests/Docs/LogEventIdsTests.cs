using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Logging;

namespace AgentPg.Tests.Docs;

/// <summary>The event ids of every log message the packages write, against the table in docs/operations.md that operators
/// filter and alert by: an id is unique across the packages, falls in a documented range, and every documented range begins
/// and ends with an id that exists.</summary>
public sealed partial class LogEventIdsTests
{
    [Fact]
    public void EveryLogEventId_IsUniqueAcrossThePackages_AndDocumentedInOperationsMd()
    {
        var messages = new[] { typeof(AgentPgClient).Assembly, typeof(AgentPg.Mcp.McpServerOptions).Assembly }
            .SelectMany(a => a.GetTypes())
            .SelectMany(t => t.GetMethods(BindingFlags.Static | BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.DeclaredOnly))
            .Select(m => (Method: $"{m.DeclaringType!.Assembly.GetName().Name}: {m.Name}", Attribute: m.GetCustomAttribute<LoggerMessageAttribute>()))
            .Where(m => m.Attribute is not null)
            .Select(m => (m.Method, Id: m.Attribute!.EventId))
            .ToList();
        Assert.True(messages.Count > 50, $"only {messages.Count} log messages found: the reflection no longer sees them");

        var duplicates = messages.GroupBy(m => m.Id).Where(g => g.Count() > 1)
            .Select(g => $"{g.Key}: {string.Join(", ", g.Select(m => m.Method))}").ToList();
        Assert.True(duplicates.Count == 0, "log event ids used twice (a filter or an alert on the id would match both):\n" + string.Join("\n", duplicates));

        var ranges = DocumentedRanges();
        var undocumented = messages.Where(m => !ranges.Any(r => r.First <= m.Id && m.Id <= r.Last))
            .Select(m => $"{m.Id} ({m.Method})").ToList();
        Assert.True(undocumented.Count == 0, "log event ids missing from the table in docs/operations.md (## Logging):\n" + string.Join("\n", undocumented));

        var ids = messages.Select(m => m.Id).ToHashSet();
        var stale = ranges.Where(r => !ids.Contains(r.First) || !ids.Contains(r.Last)).Select(r => r.Text).ToList();
        Assert.True(stale.Count == 0, "docs/operations.md documents ranges whose first or last id no log message has: " + string.Join(", ", stale));
    }

    /// <summary>The ids of the table's first column: <c>| 1001–1006 |</c>, <c>| 1201 |</c>, several separated by commas.</summary>
    private static List<(int First, int Last, string Text)> DocumentedRanges()
    {
        var lines = File.ReadAllLines(Path.Combine(RepositoryRoot(), "docs", "operations.md"));
        var start = Array.FindIndex(lines, l => l.StartsWith("## Logging", StringComparison.Ordinal));
        Assert.True(start >= 0, "docs/operations.md has no '## Logging' section");
        var ranges = new List<(int, int, string)>();
        foreach (var line in lines.Skip(start).TakeWhile((l, i) => i == 0 || !l.StartsWith("## ", StringComparison.Ordinal)))
        {
            if (IdCell().Match(line) is not { Success: true } cell)
            {
                continue;
            }

            foreach (var part in cell.Groups[1].Value.Split(',', StringSplitOptions.TrimEntries))
            {
                var bounds = part.Split(['–', '-'], StringSplitOptions.TrimEntries);
                ranges.Add((int.Parse(bounds[0], CultureInfo.InvariantCulture), int.Parse(bounds[^1], CultureInfo.InvariantCulture), part));
            }
        }

        Assert.True(ranges.Count > 0, "no event id table found under '## Logging' in docs/operations.md");
        return ranges;
    }

    [GeneratedRegex(@"^\|\s*([0-9][0-9–,\- ]*?)\s*\|")]
    private static partial Regex IdCell();

    internal static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "AgentPg.slnx")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"No AgentPg.slnx above {AppContext.BaseDirectory}: run the tests from the repository.");
    }
}
