using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Cli;

/// <summary>The CLI in a database with more agents than one page of <c>ListAgentsAsync</c> holds (its own schema: the thousand
/// agents would crowd other classes' agent lists).</summary>
public sealed class CliManyAgentsTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task RunsList_NamesTheAgentOfARun_WhenItSortsAfterTheFirstThousandAgents()
    {
        await using var h = await Harness.StartAsync(db);
        for (var i = 0; i < 1000; i++)
        {
            await h.Client.CreateAgentAsync(new AgentDefinition { Name = $"a{i:0000}", Model = "claude-sonnet-4-5" });
        }

        var agent = await h.Client.CreateAgentAsync(new AgentDefinition { Name = "zeta_reviewer", Model = "claude-sonnet-4-5" });
        var session = await h.Client.NewSessionAsync();
        var run = await db.Seed.RunAsync(session, agent.Id);
        await db.Seed.FinishRunAsync(run);

        var table = await CliRunner.RunAsync(db.Schema, "runs", "list", "--session", session.ToString());

        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains(run.ToString(), table.Output, StringComparison.Ordinal);
        Assert.Contains("zeta_reviewer", table.Output, StringComparison.Ordinal);
    }
}
