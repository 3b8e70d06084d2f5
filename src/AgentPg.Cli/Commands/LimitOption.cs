using System.CommandLine;

namespace AgentPg.Cli.Commands;

/// <summary>The <c>--limit</c> option of the list commands: how many rows to show, 1 to 1000.</summary>
internal static class LimitOption
{
    public static Option<int> Create(string description, int defaultValue)
        => new("--limit") { Description = description, DefaultValueFactory = _ => defaultValue };

    /// <summary>The option's value; anything outside 1 to 1000 is a usage error.</summary>
    public static int Get(ParseResult parsed, Option<int> limit)
    {
        var count = parsed.GetValue(limit);
        return count is < 1 or > 1000 ? throw CliException.Usage($"--limit {count}: give a number from 1 to 1000.") : count;
    }
}
