namespace AgentPg.Internal;

/// <summary>Near misses of an agent name, for the message of a name that matched nothing.</summary>
internal static class AgentNames
{
    /// <summary>At most three names equal to <paramref name="name"/> but for case, or within two edits of it (one for names of
    /// up to four characters), closest first.</summary>
    public static IReadOnlyList<string> Similar(string name, IEnumerable<string> names)
    {
        var budget = name.Length <= 4 ? 1 : 2;
        return names
            .Select(n => (Name: n, Distance: string.Equals(n, name, StringComparison.OrdinalIgnoreCase) ? 0 : Distance(n.ToLowerInvariant(), name.ToLowerInvariant(), budget)))
            .Where(c => c.Distance <= budget && c.Name != name)
            .OrderBy(c => c.Distance)
            .ThenBy(c => c.Name, StringComparer.Ordinal)
            .Take(3)
            .Select(c => c.Name)
            .ToList();
    }

    /// <summary>The Levenshtein distance of two strings, or <paramref name="budget"/> + 1 as soon as it is known to be larger.</summary>
    private static int Distance(string a, string b, int budget)
    {
        if (Math.Abs(a.Length - b.Length) > budget)
        {
            return budget + 1;
        }

        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            var rowMinimum = i;
            for (var j = 1; j <= b.Length; j++)
            {
                var substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
                current[j] = Math.Min(substitution, Math.Min(previous[j], current[j - 1]) + 1);
                rowMinimum = Math.Min(rowMinimum, current[j]);
            }

            if (rowMinimum > budget)
            {
                return budget + 1;
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }
}
