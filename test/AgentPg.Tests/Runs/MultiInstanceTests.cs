using System.Collections.Concurrent;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

public sealed class MultiInstanceTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task TwoInstances_200RunsWithTools_EachCompletesExactlyOnceAndBothWork()
    {
        var executions = new ConcurrentDictionary<Guid, int>();
        TestTool Counter() => new("count_call", (ctx, _, _) =>
        {
            executions.AddOrUpdate(ctx.ToolExecutionId, 1, (_, n) => n + 1);
            return Task.FromResult("counted " + ctx.RunId);
        });

        await using var h = await Harness.StartAsync(db, o => o.MaxConcurrentStreamingRuns = 10, start: true, Counter());
        var second = await h.AddClientAsync(o => o.MaxConcurrentStreamingRuns = 10, start: true, Counter());
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text("done: " + request.ToolResults[0].Content)
            : FakeReply.ToolUse("count_call", new { }));
        var agent = await h.AgentAsync(a => a with { Tools = ["count_call"] });

        var runs = new List<Guid>();
        for (var i = 0; i < 200; i++)
        {
            var session = await h.Client.NewSessionAsync();
            runs.Add(await (i % 2 == 0 ? h.Client : second).RunFastAsync(session, agent.Id, "count " + i));
        }

        // One query watches the 200 runs. 200 WaitForRunAsync calls at once would each read its run every poll interval (200 ms):
        // bursts of up to 200 queries on the pool and the two cores the test classes running beside this one share.
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
                "SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY($1) AND state IN ('completed', 'failed', 'cancelled')", runs.ToArray()) == runs.Count,
            "all 200 runs to end", TimeSpan.FromSeconds(120));
        var responses = new List<Response>();
        foreach (var id in runs)
        {
            responses.Add(await h.Client.WaitForRunAsync(id));
        }

        Assert.All(responses, r => Assert.Equal("done: counted " + r.RunId, r.Text));
        Assert.Equal(200, executions.Count);
        Assert.All(executions.Values, n => Assert.Equal(1, n));
        // Two assistant messages and two user messages per run: nothing written twice.
        Assert.Equal(800L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_messages WHERE run_id = ANY($1)", runs.ToArray()));
        var perInstance = await db.ScalarAsync<long>(
            "SELECT count(DISTINCT instance_id) FROM {schema}.agentpg_iterations WHERE run_id = ANY($1)", runs.ToArray());
        Assert.Equal(2L, perInstance);
        var toolInstances = await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = ANY($1) AND state = 'completed' AND attempt_count = 1", runs.ToArray());
        Assert.Equal(200L, toolInstances);
    }

    [DatabaseFact]
    public async Task StaleWorker_ClaimEpochBumpedWhileStreaming_CannotWriteItsResult()
    {
        await using var h = await Harness.StartAsync(db, o => o.MaxConcurrentStreamingRuns = 1);
        var agent = await h.AgentAsync();
        var staleSession = await h.Client.NewSessionAsync();
        var arrived = new TaskCompletionSource();
        var release = new TaskCompletionSource();
        h.Claude.Respond(async (request, ct) =>
        {
            if (request.LastUserText == "stale")
            {
                arrived.TrySetResult();
                await release.Task.WaitAsync(ct);
                return FakeReply.Text("late answer");
            }

            return FakeReply.Text("fresh answer");
        });
        var stale = await h.Client.RunFastAsync(staleSession, agent.Id, "stale");
        await Eventually.WithinAsync(arrived.Task, "the stale run's request");

        // What a rescue does to the claim while the worker still streams.
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET claim_epoch = claim_epoch + 1 WHERE id = $1", stale);
        release.SetResult();

        // With one slot, the next run can only start once the stale worker has given up its slot.
        var next = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "next");
        Assert.Equal("fresh answer", next.Text);

        var run = await h.Client.GetRunAsync(stale);
        Assert.Equal(RunState.Streaming, run.State);
        Assert.Null(run.ResponseText);
        var messages = await h.Client.GetMessagesAsync(staleSession);
        Assert.Equal([MessageRole.User], messages.Select(m => m.Role));
        Assert.Null((await h.Client.GetIterationsAsync(stale)).Single().CompletedAt);

        // Shutdown would release the run back to the queue (correctly); this test is done with it.
        await h.Client.CancelRunAsync(stale);
    }
}
