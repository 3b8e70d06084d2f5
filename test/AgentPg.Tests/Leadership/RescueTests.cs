using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Leadership;

public sealed class RescueTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static void FastRescue(AgentPgOptions o)
    {
        o.LeaderTtl = TimeSpan.FromMilliseconds(600);
        o.InstanceTtl = TimeSpan.FromSeconds(2);
        o.HeartbeatInterval = TimeSpan.FromMilliseconds(200);
        o.CleanupInterval = TimeSpan.FromMilliseconds(300);
        o.RunRescue.Interval = TimeSpan.FromMilliseconds(200);
    }

    /// <summary>Makes <paramref name="run"/> look claimed by a dead instance: its holder stopped heartbeating an hour ago.</summary>
    private async Task ClaimByDeadInstanceAsync(Guid run, string holder, bool withInstanceRow = true, int rescueAttempts = 0)
    {
        if (withInstanceRow)
        {
            await db.Seed.DeadInstanceAsync(holder);
        }

        await db.Seed.ClaimRunAsync(run, holder, TimeSpan.FromHours(1), rescueAttempts: rescueAttempts);
    }

    [DatabaseFact]
    public async Task DeadInstance_ItsStreamingRunIsReleasedAndFinishedByALiveInstance()
    {
        await using var h = await Harness.StartAsync(db, FastRescue, start: false);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("finished by the survivor"));
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await ClaimByDeadInstanceAsync(run, "ghost-1");

        await h.Client.StartAsync();
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the rescued run to complete");

        Assert.Equal("finished by the survivor", response.Text);
        var finished = await h.Client.GetRunAsync(run);
        Assert.Equal(1, finished.RescueAttempts);
        Assert.NotNull(finished.LastRescueAt);
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = 'ghost-1'") == 0,
            "the leader to remove the dead instance");
    }

    [DatabaseFact]
    public async Task ClaimWithoutAnyInstanceRow_IsRescuedByClaimAge()
    {
        // After a PostgreSQL crash the UNLOGGED instance table is empty: claims are judged by their age instead.
        await using var h = await Harness.StartAsync(db, FastRescue, start: false);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("recovered"));
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await ClaimByDeadInstanceAsync(run, "vanished", withInstanceRow: false);

        await h.Client.StartAsync();

        Assert.Equal("recovered", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the rescued run")).Text);
    }

    [DatabaseFact]
    public async Task RescuedTooOften_FailsWithRescueFailed()
    {
        await using var h = await Harness.StartAsync(db, o =>
        {
            FastRescue(o);
            o.RunRescue.MaxAttempts = 2;
        }, start: false);
        var agent = await h.AgentAsync();
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await ClaimByDeadInstanceAsync(run, "ghost-2", rescueAttempts: 2);

        await h.Client.StartAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run to fail"));
        Assert.Equal("rescue_failed", ex.Context["error_type"]);
        Assert.Contains("the maximum is 2", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task DeadInstance_ItsRunningToolIsReleasedAndExecutedElsewhere()
    {
        var executed = 0;
        await using var h = await Harness.StartAsync(db, FastRescue, start: false,
            new TestTool("work", (_, _, _) => Task.FromResult("worked " + Interlocked.Increment(ref executed))));
        var agent = await h.AgentAsync(a => a with { Tools = ["work"] });
        h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text(r.ToolResults[0].Content) : null);
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunFastAsync(session, agent.Id, "go");

        // The state a dead instance leaves behind: it recorded Claude's tool_use and was executing the tool.
        await db.Seed.DeadInstanceAsync("ghost-3");
        await db.Seed.UserTextAsync(session, run, "go");
        await db.Seed.ToolUseAsync(session, run, "toolu_g", "work");
        var iteration = await db.Seed.ToolIterationAsync(run);
        await db.Seed.ToolExecutionAsync(run, iteration, "toolu_g", "work", holder: "ghost-3", claimedAgo: TimeSpan.FromHours(1));

        await h.Client.StartAsync();
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run to finish after the tool's rescue");

        Assert.Equal("worked 1", response.Text);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT rescue_attempts::bigint FROM {schema}.agentpg_tool_executions WHERE run_id = $1", run));
        // The interrupted attempt was given back: the tool ran once and that was attempt 1.
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT attempt_count::bigint FROM {schema}.agentpg_tool_executions WHERE run_id = $1", run));
    }

    [DatabaseFact]
    public async Task LiveInstanceWithoutProgress_RunIsRescuedAfterRescueTimeoutAndItsLateResultRefused()
    {
        var firstArrived = new TaskCompletionSource();
        var releaseFirst = new TaskCompletionSource();
        var requests = 0;
        await using var h = await Harness.StartAsync(db, o =>
        {
            FastRescue(o);
            o.RunRescue.Timeout = TimeSpan.FromSeconds(1);
        });
        var agent = await h.AgentAsync();
        h.Claude.Respond(async (_, ct) =>
        {
            if (Interlocked.Increment(ref requests) == 1)
            {
                // Headers never come: no progress at all.
                firstArrived.TrySetResult();
                await releaseFirst.Task.WaitAsync(ct);
                return FakeReply.Text("stale answer");
            }

            return FakeReply.Text("fresh answer");
        });
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunFastAsync(session, agent.Id, "go");
        await Eventually.WithinAsync(firstArrived.Task, "the first request");

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the rescued run to complete");
        releaseFirst.SetResult();

        Assert.Equal("fresh answer", response.Text);
        Assert.Equal(1, (await h.Client.GetRunAsync(run)).RescueAttempts);
        var iterations = await h.Client.GetIterationsAsync(run);
        Assert.Equal("abandoned", iterations[0].ErrorType);
        Assert.Null(iterations[1].ErrorType);
        Assert.Single(await h.Client.GetMessagesAsync(session), m => m.Role == MessageRole.Assistant);
    }

    [DatabaseFact]
    public async Task LiveStreamOfThinkingAndToolInputWithoutText_IsProgress_NotRescued()
    {
        // D4: a stream that spends longer than RescueTimeout in extended thinking and writing a tool's input, with no
        // text at all, is alive; the leader must not release it and restart it. A rescue timeout of 3 s, not 1: progress is
        // marked every timeout/4, and the first mark also waits for the request and its first events, which took 0.55-0.6 s
        // of a 1-s timeout on a machine that was not even loaded.
        await using var h = await Harness.StartAsync(db, o =>
        {
            FastRescue(o);
            o.RunRescue.Timeout = TimeSpan.FromSeconds(3);
        }, start: true, new TestTool("note", (_, _, _) => Task.FromResult("noted")));
        var agent = await h.AgentAsync(a => a with { Tools = ["note"] });
        var streams = 0;
        h.Claude.Respond(request =>
        {
            if (request.ToolResults.Count > 0)
            {
                return FakeReply.Text("done");
            }

            Interlocked.Increment(ref streams);
            // 16 characters per delta, 150 ms per event: ~20 thinking deltas, a signature and ~20 input_json deltas ≈ 6 s
            // (plus the starts and stops), twice the rescue timeout, and not one text_delta.
            return FakeReply.Message(
                FakeContentBlock.Thinking(string.Concat(Enumerable.Repeat("thinking hard...", 20)), signature: "sig-d4"),
                FakeContentBlock.ToolUse("note", new { text = string.Concat(Enumerable.Repeat("a long argument.", 20)) })) with
            {
                EventDelay = TimeSpan.FromMilliseconds(150),
            };
        });
        var session = await h.Client.NewSessionAsync();

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "think, then note"), "the run to complete");

        Assert.Equal("done", response.Text);
        Assert.Equal(1, streams);
        var run = await h.Client.GetRunAsync(response.RunId);
        Assert.Equal(0, run.RescueAttempts);
        Assert.DoesNotContain(await h.Client.GetIterationsAsync(response.RunId), i => i.ErrorType == "abandoned");
    }
}
