using System.Collections.Concurrent;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Tools;

/// <summary>ToolContext.IdempotencyKey: one key per tool execution, the same on every attempt and on every instance.</summary>
public sealed class IdempotencyKeyTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private sealed record Attempt(string Instance, Guid ExecutionId, int Number, string Key);

    [DatabaseFact]
    public async Task IdempotencyKey_IsTheSameOnARetryAndDiffersBetweenExecutions()
    {
        var attempts = new ConcurrentQueue<Attempt>();
        var failedOnce = new ConcurrentDictionary<Guid, bool>();
        await using var h = await Harness.StartAsync(db, o => o.ToolRetry.MaxAttempts = 3, start: true, new TestTool("charge", (context, _, _) =>
        {
            attempts.Enqueue(new Attempt("a", context.ToolExecutionId, context.Attempt, context.IdempotencyKey));
            return failedOnce.TryAdd(context.ToolExecutionId, true)
                ? throw new HttpRequestException("payment provider timed out")
                : Task.FromResult("charged");
        }));
        var agent = await h.AgentAsync(a => a with { Tools = ["charge"] });
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text(string.Join(",", request.ToolResults.Select(r => r.Content)))
            : FakeReply.Message(FakeContentBlock.ToolUse("charge", new { amount = 1 }, "toolu_1"), FakeContentBlock.ToolUse("charge", new { amount = 2 }, "toolu_2")) with { StopReason = "tool_use" });

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "charge twice"), "the run");

        Assert.Equal("charged,charged", response.Text);
        var byExecution = attempts.GroupBy(a => a.ExecutionId).ToList();
        Assert.Equal(2, byExecution.Count);
        Assert.All(byExecution, g =>
        {
            Assert.Equal([1, 2], g.Select(a => a.Number).Order());
            Assert.Single(g.Select(a => a.Key).Distinct());
        });
        Assert.NotEqual(byExecution[0].First().Key, byExecution[1].First().Key);
    }

    [DatabaseFact]
    public async Task IdempotencyKey_IsTheSameAfterARescueOnAnotherInstance()
    {
        var attempts = new ConcurrentQueue<Attempt>();
        var firstStarted = new TaskCompletionSource();
        var releaseFirst = new TaskCompletionSource();
        var firstReturned = new TaskCompletionSource();
        void Options(AgentPgOptions o)
        {
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(200);
            o.InstanceTtl = TimeSpan.FromSeconds(4);
            o.LeaderTtl = TimeSpan.FromSeconds(4);
            o.CleanupInterval = TimeSpan.FromMilliseconds(300);
            o.RunRescue.Interval = TimeSpan.FromMilliseconds(300);
        }

        // B starts first, alone and without the tool: it leads, and cannot take the run or the tool from A.
        await using var h = await Harness.StartAsync(db, Options);
        var b = h.Client;
        await Eventually.TrueAsync(async () => await db.ScalarAsync<object>("SELECT leader_id FROM {schema}.agentpg_leader WHERE expires_at > now()") as string == b.InstanceId,
            "B to lead");
        var a = await h.AddClientAsync(Options, start: false, new TestTool("charge", async (context, _, _) =>
        {
            attempts.Enqueue(new Attempt("a", context.ToolExecutionId, context.Attempt, context.IdempotencyKey));
            firstStarted.TrySetResult();
            // A frozen process: it ignores its token and answers long after it was given up.
            await releaseFirst.Task;
            firstReturned.TrySetResult();
            return "charged by a";
        }));

        // A never leads (its lease writes fail in the database): only the leader evicts instances, and never itself, so if a
        // busy machine delayed B's refresh past its lease and A took over, nobody would ever evict A.
        await db.ExecuteAsync(
            $"ALTER TABLE {{schema}}.agentpg_leader ADD CONSTRAINT idempotency_test_a_never_leads CHECK (leader_id <> '{a.InstanceId}') NOT VALID");
        await a.StartAsync();
        var agent = await h.AgentAsync(x => x with { Tools = ["charge"] });
        h.Claude.Respond(request => request.ToolResults.Count > 0 ? FakeReply.Text(request.ToolResults[0].Content) : FakeReply.ToolUse("charge", new { amount = 1 }));
        var session = await b.NewSessionAsync();
        var run = await b.RunFastAsync(session, agent.Id, "charge");
        await Eventually.WithinAsync(firstStarted.Task, "the tool to start on A");

        // A freezes as a process would: it stops heartbeating (every write of its instance row fails in the database), and it
        // claims nothing more (a claim naming it fails). Alive, it would otherwise race B for the execution the rescue releases.
        await db.ExecuteAsync(
            $"ALTER TABLE {{schema}}.agentpg_instances ADD CONSTRAINT idempotency_test_a_frozen CHECK (id <> '{a.InstanceId}' OR last_heartbeat_at < '2000-01-01') NOT VALID");
        await db.ExecuteAsync(
            $"ALTER TABLE {{schema}}.agentpg_tool_executions ADD CONSTRAINT idempotency_test_a_frozen CHECK (claimed_by_instance_id <> '{a.InstanceId}') NOT VALID");
        await db.ExecuteAsync(
            $"ALTER TABLE {{schema}}.agentpg_runs ADD CONSTRAINT idempotency_test_a_frozen CHECK (claimed_by_instance_id <> '{a.InstanceId}') NOT VALID");
        try
        {
            b.RegisterTool(new TestTool("charge", (context, _, _) =>
            {
                attempts.Enqueue(new Attempt("b", context.ToolExecutionId, context.Attempt, context.IdempotencyKey));
                return Task.FromResult("charged by b");
            }));

            var response = await Eventually.WithinAsync(b.WaitForRunAsync(run), "B to rescue the tool and finish the run", TimeSpan.FromSeconds(60));

            Assert.Equal("charged by b", response.Text);
        }
        finally
        {
            foreach (var table in new[] { "agentpg_instances", "agentpg_tool_executions", "agentpg_runs" })
            {
                await db.ExecuteAsync($"ALTER TABLE {{schema}}.{table} DROP CONSTRAINT IF EXISTS idempotency_test_a_frozen");
            }

            releaseFirst.TrySetResult();
        }

        await Eventually.WithinAsync(firstReturned.Task, "A's late attempt to return");
        var fromA = Assert.Single(attempts, x => x.Instance == "a");
        var fromB = Assert.Single(attempts, x => x.Instance == "b");
        Assert.Equal(fromA.ExecutionId, fromB.ExecutionId);
        Assert.Equal(fromA.Key, fromB.Key);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT rescue_attempts::bigint FROM {schema}.agentpg_tool_executions WHERE run_id = $1", run));
        // A's late result was refused: the recorded output is B's.
        Assert.Equal("charged by b", Assert.Single(await b.GetRunToolCallsAsync(run)).Output);
    }
}
