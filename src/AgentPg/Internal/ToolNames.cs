using System.Text.RegularExpressions;

namespace AgentPg.Internal;

internal static partial class ToolNames
{
    public const string Rule = "^[a-zA-Z0-9_-]{1,64}$";

    public static bool IsValid(string? name) => name is not null && ValidName().IsMatch(name);

    [GeneratedRegex(Rule, RegexOptions.CultureInvariant)]
    private static partial Regex ValidName();
}
