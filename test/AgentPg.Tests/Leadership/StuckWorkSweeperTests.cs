using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Leadership;

/// <summary>The leader releases work a live instance holds but no longer works on (review D1, last line of defence).</summary>
public sealed class StuckWorkSweeperTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static void Fast(AgentPgOptions o)
    {
        o.InstanceTtl = TimeSpan.FromSeconds(2);
        o.RunRescue.Interval = TimeSpan.FromMilliseconds(200);
    }

    [DatabaseFact]
    public async Task ToolExecution_WhoseOutcomeCannotBeWrittenAtAll_IsReleasedAndRunsAgain()
    {
        // Every write that ends the first claim fails (the worker gives up); a release by the leader bumps the epoch and
        // passes, and so do the writes of the next attempt.
        await db.ExecuteAsync("""
            CREATE FUNCTION {schema}.refuse_tool_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected: outcome refused'; END $$
            """);
        await db.ExecuteAsync("""
            CREATE TRIGGER refuse_tool_outcome BEFORE UPDATE ON {schema}.agentpg_tool_executions
               FOR EACH ROW WHEN (OLD.state = 'running' AND NEW.state <> 'running' AND NEW.claim_epoch = OLD.claim_epoch
                                  AND OLD.rescue_attempts = 0)
               EXECUTE FUNCTION {schema}.refuse_tool_outcome()
            """);
        try
        {
            var calls = 0;
            await using var h = await Harness.StartAsync(db, Fast, tools: new TestTool("t", (_, _, _) => Task.FromResult("ok " + Interlocked.Increment(ref calls))));
            var agent = await h.AgentAsync(a => a with { Tools = ["t"] });
            h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text(r.ToolResults[0].Content) : FakeReply.ToolUse("t", new { }));

            var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to complete");

            Assert.Equal("ok 2", response.Text);
            Assert.Equal(2, calls);
            Assert.Equal(1, await db.ScalarAsync<int>("SELECT rescue_attempts FROM {schema}.agentpg_tool_executions WHERE run_id = $1", response.RunId));
        }
        finally
        {
            await db.ExecuteAsync("DROP TRIGGER refuse_tool_outcome ON {schema}.agentpg_tool_executions");
        }
    }

    [DatabaseFact]
    public async Task StreamingRun_WhoseOutcomeCannotBeWrittenAtAll_IsReleasedAndRunsAgain()
    {
        await db.ExecuteAsync("""
            CREATE FUNCTION {schema}.refuse_run_outcome() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN RAISE EXCEPTION 'injected: outcome refused'; END $$
            """);
        await db.ExecuteAsync("""
            CREATE TRIGGER refuse_run_outcome BEFORE UPDATE ON {schema}.agentpg_runs
               FOR EACH ROW WHEN (OLD.state = 'streaming' AND NEW.state <> 'streaming' AND NEW.claim_epoch = OLD.claim_epoch
                                  AND OLD.rescue_attempts = 0)
               EXECUTE FUNCTION {schema}.refuse_run_outcome()
            """);
        try
        {
            await using var h = await Harness.StartAsync(db, Fast);
            var agent = await h.AgentAsync();
            var answers = 0;
            h.Claude.Respond(_ => FakeReply.Text("answer " + Interlocked.Increment(ref answers)));

            var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to complete");

            Assert.Equal("answer 2", response.Text);
            Assert.Equal(1, (await h.Client.GetRunAsync(response.RunId)).RescueAttempts);
        }
        finally
        {
            await db.ExecuteAsync("DROP TRIGGER refuse_run_outcome ON {schema}.agentpg_runs");
        }
    }
}
