using System.Text.RegularExpressions;

namespace AgentPg.Storage;

/// <summary>A validated PostgreSQL schema name and what derives from it (quoted identifier, NOTIFY channels).</summary>
/// <remarks>
/// SQL text is built once per schema by interpolating <see cref="Quoted"/>; the name is validated against a strict
/// pattern first, so nothing from outside reaches the SQL text.
/// </remarks>
internal sealed partial class SchemaName
{
    public const int MaxLength = 40;

    public SchemaName(string name)
    {
        if (!IsValid(name))
        {
            throw new ArgumentException($"'{name}' is not a valid AgentPg schema name.", nameof(name));
        }

        Name = name;
        Quoted = "\"" + name + "\"";
    }

    public string Name { get; }

    /// <summary>The double-quoted identifier, for SQL text.</summary>
    public string Quoted { get; }

    public static bool IsValid(string? name)
        => name is not null && name.Length is > 0 and <= MaxLength && ValidName().IsMatch(name) && !name.StartsWith("pg_", StringComparison.Ordinal);

    /// <summary>The NOTIFY channel for <paramref name="baseName"/> in this schema (same rule as SQL agentpg_channel()).</summary>
    public string Channel(string baseName) => Name == "public" ? baseName : Name + "." + baseName;

    public override string ToString() => Quoted;

    [GeneratedRegex("^[a-z_][a-z0-9_]*$", RegexOptions.CultureInvariant)]
    private static partial Regex ValidName();
}
