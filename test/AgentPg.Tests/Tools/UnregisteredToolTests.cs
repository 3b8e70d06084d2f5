using AgentPg.Tests.Approvals;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Tools;

/// <summary>A tool unregistered on an instance (<see cref="AgentPgClient.UnregisterTool"/>) after the instance claimed an
/// execution of it.</summary>
public sealed class UnregisteredToolTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    // The harness's instance (A) registered issue_refund when the approved execution became claimable, and had unregistered it
    // by the time its worker looked the tool up: the claim read A's registration row, which the unregistration's background
    // write had not removed yet (the test holds that row until A claimed, so the window stays open). Returns the run, the
    // execution and the transaction holding the row.
    private async Task<(Guid RunId, Guid ExecutionId, NpgsqlTransaction Held)> ClaimedAfterUnregisterAsync(Harness h, NpgsqlConnection holder)
    {
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => Refunds.Script(r));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund order A-1");
        var request = await Refunds.PendingAsync(h.Client, session, s_timeout);

        var held = await holder.BeginTransactionAsync();
        await using (var lockRow = new NpgsqlCommand(
            $"SELECT 1 FROM \"{db.Schema}\".agentpg_instance_tools WHERE instance_id = $1 AND tool_name = 'issue_refund' FOR UPDATE", holder)
            { Parameters = { new() { Value = h.Client.InstanceId } } })
        {
            Assert.Equal(1, await lockRow.ExecuteScalarAsync());
        }

        Assert.True(h.Client.UnregisterTool("issue_refund"));
        await h.Client.ApproveToolCallAsync(request.ToolExecutionId);
        await Eventually.TrueAsync(
            async () => await db.ScalarAsync<long>(
                "SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE id = $1 AND (state <> 'pending' OR claim_epoch > 0)",
                request.ToolExecutionId) > 0,
            "instance A claims the approved execution", s_timeout);
        return (runId, request.ToolExecutionId, held);
    }

    [DatabaseFact]
    public async Task UnregisteredAfterTheClaim_AnotherInstanceHasTheTool_TheExecutionGoesToIt()
    {
        var refundsA = new Refunds();
        var refundsB = new Refunds();
        await using var holder = await db.DataSource.OpenConnectionAsync();
        // The leader must not evict the other instance meanwhile: it never heartbeats.
        await using var h = await Harness.StartAsync(db, o => o.InstanceTtl = TimeSpan.FromMinutes(5), tools: refundsA.Tool());
        // Another instance registers the tool (its worker starts later, so that A is the one that claims).
        await db.Seed.InstanceAsync("unregister-other", TimeSpan.Zero);
        await db.ExecuteAsync("INSERT INTO {schema}.agentpg_instance_tools (instance_id, tool_name) VALUES ('unregister-other', 'issue_refund')");
        var (runId, executionId, held) = await ClaimedAfterUnregisterAsync(h, holder);
        await held.CommitAsync();

        // Before, A completed it as failed ("tool not found: issue_refund") and Claude got that error although another
        // instance could run the tool.
        string? seen = null;
        await Eventually.TrueAsync(
            async () => (seen = await db.ScalarAsync<string>(
                "SELECT state::text || ' after ' || attempt_count || ' attempts' FROM {schema}.agentpg_tool_executions WHERE id = $1", executionId))
                != "running after 1 attempts",
            "instance A hands the execution back (or ends it)", s_timeout);
        Assert.Equal("pending after 0 attempts", seen);
        await db.ExecuteAsync("DELETE FROM {schema}.agentpg_instances WHERE id = 'unregister-other'");

        await h.AddClientAsync(tools: refundsB.Tool());
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run, its tool run by instance B", s_timeout);

        Assert.Equal("refunded 40 on A-1", response.Text);
        Assert.Empty(refundsA.Calls);
        Assert.Single(refundsB.Calls);
    }

    [DatabaseFact]
    public async Task UnregisteredAfterTheClaim_NoOtherInstanceHasTheTool_FailsSayingSo()
    {
        var refundsA = new Refunds();
        await using var holder = await db.DataSource.OpenConnectionAsync();
        await using var h = await Harness.StartAsync(db, tools: refundsA.Tool());
        var (_, executionId, held) = await ClaimedAfterUnregisterAsync(h, holder);
        await held.CommitAsync();

        // (The run then waits: no instance has every tool its agent lists, the case UnclaimableRunScan reports.)
        var error = "";
        await Eventually.TrueAsync(
            async () => (error = await db.ScalarAsync<string>(
                "SELECT CASE WHEN state = 'failed' THEN error_message ELSE '' END FROM {schema}.agentpg_tool_executions WHERE id = $1", executionId)) != "",
            "instance A fails the execution", s_timeout);
        Assert.StartsWith("tool not found: issue_refund", error, StringComparison.Ordinal);
        Assert.Contains("no other instance registers it", error, StringComparison.Ordinal);
        Assert.Empty(refundsA.Calls);
    }
}
