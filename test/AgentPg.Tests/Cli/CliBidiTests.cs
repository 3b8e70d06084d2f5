using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Cli;

/// <summary>A bidirectional override (U+202E) in a model's tool input or answer reverses, in a terminal that applies
/// bidirectional text, what follows it: an approver could read another value than the one that runs. Every command shows it
/// as [U+202E].</summary>
public sealed class CliBidiTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string Rlo = "\u202E";
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [DatabaseFact]
    public async Task BidiOverrides_InAToolInputAndAnAnswer_AreShownVisiblyByEveryCommand()
    {
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("pay", (_, _, _) => Task.FromResult($"paid {Rlo}diap"))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["pay"], ToolsRequiringApproval = ["pay"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("pay", new { to = $"{Rlo}moc.live@bob" }) : FakeReply.Text($"sent {Rlo}enod"));
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunFastAsync(session, agent.Id, $"pay {Rlo}bob");
        ToolApprovalRequest? request = null;
        await Eventually.TrueAsync(async () => (request = (await h.Client.GetPendingApprovalsAsync(session)) is [var first, ..] ? first : null) is not null,
            "the payment waits for approval", s_timeout);

        var list = await CliRunner.RunAsync(db.Schema, "approvals", "list", "--session", session.ToString());
        Assert.True(list.ExitCode == 0, list.ToString());
        Assert.False(list.Output.Contains(Rlo, StringComparison.Ordinal), list.Output);
        Assert.Contains("[U+202E]", list.Output, StringComparison.Ordinal);

        await h.Client.ApproveToolCallAsync(request!.ToolExecutionId);
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run completes", s_timeout);
        foreach (var command in new[] { ["runs", "show", run.ToString()], ["runs", "watch", run.ToString()], new[] { "runs", "list", "--session", session.ToString() } })
        {
            var result = await CliRunner.RunAsync(db.Schema, command);
            Assert.True(result.ExitCode == 0, result.ToString());
            Assert.False(result.Output.Contains(Rlo, StringComparison.Ordinal), $"agentpg {string.Join(' ', command)} wrote a raw U+202E:\n{result.Output}");
            Assert.Contains("[U+202E]", result.Output, StringComparison.Ordinal);
        }
    }
}
