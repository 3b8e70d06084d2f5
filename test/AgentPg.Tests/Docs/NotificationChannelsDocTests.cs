using AgentPg.Notifications;

namespace AgentPg.Tests.Docs;

/// <summary>Whoever LISTENs on AgentPg's channels themselves, or reads why a worker woke, finds every channel in the tables
/// of docs/migrations.md and docs/architecture.md.</summary>
public sealed class NotificationChannelsDocTests
{
    [Theory]
    [InlineData("migrations.md")]
    [InlineData("architecture.md")]
    public void EveryChannel_IsInTheDocsTable(string page)
    {
        var text = File.ReadAllText(Path.Combine(LogEventIdsTests.RepositoryRoot(), "docs", page));
        var missing = Channels.All.Where(c => !text.Contains($"| `{c}` |", StringComparison.Ordinal)).ToList();
        Assert.True(missing.Count == 0, $"docs/{page} has no table row for the channels {string.Join(", ", missing)}");
    }
}
