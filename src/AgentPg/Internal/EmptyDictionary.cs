using System.Collections.ObjectModel;

namespace AgentPg;

internal static class EmptyDictionary
{
    public static readonly IReadOnlyDictionary<string, object?> Instance = ReadOnlyDictionary<string, object?>.Empty;
}
