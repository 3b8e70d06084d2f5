using System.Globalization;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

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
        await using var refuse = await db.TriggerAsync("refuse_tool_outcome", "BEFORE UPDATE", "agentpg_tool_executions",
            "RAISE EXCEPTION 'injected: outcome refused';",
            when: "OLD.state = 'running' AND NEW.state <> 'running' AND NEW.claim_epoch = OLD.claim_epoch AND OLD.rescue_attempts = 0");
        var calls = 0;
        await using var h = await Harness.StartAsync(db, Fast, tools: new TestTool("t", (_, _, _) => Task.FromResult("ok " + Interlocked.Increment(ref calls))));
        var agent = await h.AgentAsync(a => a with { Tools = ["t"] });
        h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text(r.ToolResults[0].Content) : FakeReply.ToolUse("t", new { }));

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to complete");

        Assert.Equal("ok 2", response.Text);
        Assert.Equal(2, calls);
        Assert.Equal(1, await db.ScalarAsync<int>("SELECT rescue_attempts FROM {schema}.agentpg_tool_executions WHERE run_id = $1", response.RunId));
    }

    [DatabaseFact]
    public async Task StreamingRun_WhoseOutcomeCannotBeWrittenAtAll_IsReleasedAndRunsAgain()
    {
        await using var refuse = await db.TriggerAsync("refuse_run_outcome", "BEFORE UPDATE", "agentpg_runs",
            "RAISE EXCEPTION 'injected: outcome refused';",
            when: "OLD.state = 'streaming' AND NEW.state <> 'streaming' AND NEW.claim_epoch = OLD.claim_epoch AND OLD.rescue_attempts = 0");
        await using var h = await Harness.StartAsync(db, Fast);
        var agent = await h.AgentAsync();
        var answers = 0;
        h.Claude.Respond(_ => FakeReply.Text("answer " + Interlocked.Increment(ref answers)));

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to complete");

        Assert.Equal("answer 2", response.Text);
        Assert.Equal(1, (await h.Client.GetRunAsync(response.RunId)).RescueAttempts);
    }
    [DatabaseFact]
    public async Task RunWhoseClaimOutlastsTheBound_IsNotReleasedFromItsWorker()
    {
        // The claim statement takes longer than the sweep's bound (InstanceTtl; a busy server, here a lock the test holds)
        // while the instance heartbeats. Those heartbeats read the held work before the claim's run was in it; dated at their
        // write, they vouched for the claim once it committed, and the leader (this instance) released the run its worker
        // was starting: the model was called twice.
        var key = Random.Shared.NextInt64(1, long.MaxValue).ToString(CultureInfo.InvariantCulture);
        await using var slowClaim = await db.TriggerAsync("slow_claim", "BEFORE UPDATE", "agentpg_runs",
            $"PERFORM pg_advisory_xact_lock({key}); RETURN NEW;",
            when: "OLD.claimed_by_instance_id IS NULL AND NEW.claimed_by_instance_id IS NOT NULL AND OLD.rescue_attempts = 0");
        // Each heartbeat's time, to wait for two of them during the claim (the second is dated by the first).
        await db.ExecuteAsync("CREATE TABLE {schema}.heartbeats_seen (at TIMESTAMPTZ NOT NULL)");
        await using var heartbeatSeen = await db.TriggerAsync("heartbeat_seen", "AFTER UPDATE OF last_heartbeat_at", "agentpg_instances",
            "INSERT INTO {schema}.heartbeats_seen VALUES (NEW.last_heartbeat_at); RETURN NULL;");
        await using var blocker = await db.DataSource.OpenConnectionAsync();
        await using (var take = new NpgsqlCommand($"SELECT pg_advisory_lock({key})", blocker))
        {
            await take.ExecuteNonQueryAsync();
        }

        await using var h = await Harness.StartAsync(db, o =>
        {
            o.InstanceTtl = TimeSpan.FromSeconds(1);
            o.LeaderTtl = TimeSpan.FromSeconds(1);
            // Long next to the sweep's interval: the sweep runs between the claim's commit and the next heartbeat.
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(900);
            o.RunRescue.Interval = TimeSpan.FromMilliseconds(50);
        });
        var agent = await h.AgentAsync();
        var answers = 0;
        h.Claude.Respond(_ => FakeReply.Text("answer " + Interlocked.Increment(ref answers)));
        Guid run;
        try
        {
            run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
            // The claim has taken the run (claimed_at is set before the trigger waits), two heartbeats came more than the
            // bound after that, and the instance leads (it runs the sweep).
            await Eventually.TrueAsync(
                async () => await db.ScalarAsync<bool>("""
                    SELECT coalesce(bool_or((SELECT count(*) FROM {schema}.heartbeats_seen h
                                              WHERE h.at > l.waitstart + interval '1 second') >= 2), false)
                           AND EXISTS (SELECT 1 FROM {schema}.agentpg_leader WHERE leader_id = $1 AND expires_at > now())
                      FROM pg_locks l
                      JOIN pg_stat_activity a ON a.pid = l.pid
                     WHERE l.locktype = 'advisory' AND NOT l.granted AND a.query LIKE '%' || $2 || '%agentpg_claim_runs%'
                    """, h.Client.InstanceId, db.Schema),
                "the claim waits for the lock, the instance heartbeats twice more than the bound later and leads");
        }
        finally
        {
            // Before the harness stops: its worker waits for the claim, which waits for the lock.
            await using var release = new NpgsqlCommand("SELECT pg_advisory_unlock_all()", blocker);
            await release.ExecuteNonQueryAsync();
        }

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run to complete");

        Assert.Equal("answer 1", response.Text);
        Assert.Equal(1, answers);
        Assert.Equal(0, (await h.Client.GetRunAsync(run)).RescueAttempts);
    }
}
