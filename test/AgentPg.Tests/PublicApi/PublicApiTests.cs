using System.Reflection;
using System.Text;
using AgentPg.Testing;

namespace AgentPg.Tests.PublicApi;

/// <summary>Compares the public surface of the shipped assemblies with the listings checked in next to this file, so a
/// public change is made on purpose: an accidental one fails here with the lines that differ.</summary>
/// <remarks>After an intended change, regenerate the listings with
/// <c>AGENTPG_UPDATE_PUBLIC_API=1 dotnet test test/AgentPg.Tests --filter FullyQualifiedName~PublicApiTests</c> and commit
/// them with the change.</remarks>
public sealed class PublicApiTests
{
    private const string UpdateVariable = "AGENTPG_UPDATE_PUBLIC_API";

    [Fact]
    public void AgentPg_PublicApi_MatchesTheListing() => Verify(typeof(AgentPgClient).Assembly);

    [Fact]
    public void AgentPgTesting_PublicApi_MatchesTheListing() => Verify(typeof(FakeClaudeServer).Assembly);

    [Fact]
    public void AgentPgAspNetCore_PublicApi_MatchesTheListing() => Verify(typeof(AgentPg.AspNetCore.AgentPgAdminOptions).Assembly);

    [Fact]
    public void AgentPgEntityFrameworkCore_PublicApi_MatchesTheListing() => Verify(typeof(AgentPgDbContextExtensions).Assembly);

    [Fact]
    public void AgentPgMcp_PublicApi_MatchesTheListing() => Verify(typeof(AgentPg.Mcp.McpServerOptions).Assembly);

    private static void Verify(Assembly assembly)
    {
        var name = assembly.GetName().Name!;
        var path = Path.Combine(ListingDirectory(), name + ".txt");
        var actual = PublicApiListing.Of(assembly);
        if (Environment.GetEnvironmentVariable(UpdateVariable) == "1")
        {
            File.WriteAllText(path, string.Join("\n", actual) + "\n");
            return;
        }

        var expected = File.Exists(path) ? File.ReadAllLines(path) : [];
        var diff = Diff(expected, actual);
        Assert.True(diff.Length == 0,
            $"The public API of {name} differs from {path} ('-' only in the listing, '+' only in the assembly):\n{diff}\n" +
            $"If the change is intended, run  {UpdateVariable}=1 dotnet test test/AgentPg.Tests --filter FullyQualifiedName~PublicApiTests  " +
            "and commit the updated listing with it.");
    }

    /// <summary>This folder in the source tree: found from the test's output directory upwards (the repository root holds
    /// AgentPg.slnx). Not [CallerFilePath]: deterministic builds (CI=true) map source paths to /_/.</summary>
    private static string ListingDirectory()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "AgentPg.slnx")))
            {
                return Path.Combine(dir.FullName, "test", "AgentPg.Tests", "PublicApi");
            }
        }

        throw new InvalidOperationException($"No AgentPg.slnx above {AppContext.BaseDirectory}: run the tests from the repository.");
    }

    /// <summary>The lines each side has that the other lacks, in listing order (a member that changed shows as - and +), each
    /// member with the type it belongs to.</summary>
    private static string Diff(IReadOnlyList<string> expected, IReadOnlyList<string> actual)
    {
        var expectedKeys = Qualified(expected).ToHashSet(StringComparer.Ordinal);
        var actualKeys = Qualified(actual).ToHashSet(StringComparer.Ordinal);
        var diff = new StringBuilder();
        foreach (var key in Qualified(expected).Where(k => !actualKeys.Contains(k)))
        {
            diff.Append("- ").AppendLine(key);
        }

        foreach (var key in Qualified(actual).Where(k => !expectedKeys.Contains(k)))
        {
            diff.Append("+ ").AppendLine(key);
        }

        return diff.ToString();
    }

    /// <summary>Type lines as they are, member lines (indented) prefixed with their type's line.</summary>
    private static IEnumerable<string> Qualified(IEnumerable<string> lines)
    {
        var type = "";
        foreach (var line in lines)
        {
            if (line.StartsWith(' '))
            {
                yield return type + "  ::  " + line.Trim();
            }
            else
            {
                type = line;
                yield return line;
            }
        }
    }
}
