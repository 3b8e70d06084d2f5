using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>A run cancelled by another client than the instance doing its work: the worker learns it from the
/// database's notification, and the tokens of its in-flight stream and tools fire.</summary>
public sealed class CrossInstanceCancelTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task ClientBCancels_WhileClientAStreams_TheStreamRequestIsAbortedAndNotRetried()
    {
        await using var h = await Harness.StartAsync(db);
        var worker = h.Client;
        var other = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync();
        var held = new HeldRequest(h.Claude, "long", request => FakeReply.Text("answer to " + request.LastUserText));
        var session = await other.NewSessionAsync();
        var run = await other.RunFastAsync(session, agent.Id, "long");
        await Eventually.WithinAsync(held.Arrived, "the worker's request to Claude");
        Assert.Equal(worker.InstanceId, (await other.GetRunAsync(run)).ClaimedByInstanceId);

        await other.CancelRunAsync(run);

        await Eventually.WithinAsync(held.Aborted, "the worker to abort its in-flight request");
        Assert.Equal(RunState.Cancelled, (await other.GetRunAsync(run)).State);
        // The worker is free and the session usable: the next run completes, and the cancelled call was never retried. The
        // cancelled prompt is not part of the next request (D22).
        Assert.Equal("answer to next", (await Eventually.WithinAsync(other.RunFastSyncAsync(session, agent.Id, "next"), "the next run")).Text);
        Assert.Equal(2, h.Claude.Requests.Count(r => r.IsMessagesCall));
        Assert.DoesNotContain(await other.GetMessagesAsync(session), m => m.RunId == run && m.Role == MessageRole.Assistant);
    }

    [DatabaseFact]
    public async Task ClientBCancels_WhileClientARunsATool_TheToolsTokenFiresAndItsResultIsRefused()
    {
        var toolStarted = new TaskCompletionSource();
        var tokenFired = new TaskCompletionSource();
        var finish = new TaskCompletionSource();
        await using var h = await Harness.StartAsync(db, start: true, tools: new TestTool("slow", async (_, _, ct) =>
        {
            using var registration = ct.Register(() => tokenFired.TrySetResult());
            toolStarted.TrySetResult();
            await finish.Task;
            return "late result";
        }));
        var worker = h.Client;
        var other = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync(a => a with { Tools = ["slow"] });
        h.Claude.Respond(request => request.LastUserText == "use the tool"
            ? FakeReply.ToolUse("slow", new { }, "toolu_slow")
            : FakeReply.Text("answer to " + request.LastUserText));
        var session = await other.NewSessionAsync();
        var run = await other.RunFastAsync(session, agent.Id, "use the tool");
        await Eventually.WithinAsync(toolStarted.Task, "the tool to start on the worker");
        Assert.Equal(worker.InstanceId, await db.ScalarAsync<string>("SELECT claimed_by_instance_id FROM {schema}.agentpg_tool_executions WHERE run_id = $1", run));

        await other.CancelRunAsync(run);

        await Eventually.WithinAsync(tokenFired.Task, "the tool's cancellation token on the worker");
        finish.SetResult();
        Assert.Equal(RunState.Cancelled, (await other.GetRunAsync(run)).State);
        var call = Assert.Single(await other.GetRunToolCallsAsync(run));
        Assert.Equal(ToolExecutionState.Skipped, call.State);
        Assert.Equal("", call.Output);
        Assert.Equal("answer to next", (await Eventually.WithinAsync(other.RunFastSyncAsync(session, agent.Id, "next"), "the next run")).Text);
        Assert.Equal(ToolExecutionState.Skipped, Assert.Single(await other.GetRunToolCallsAsync(run)).State);
    }
}
