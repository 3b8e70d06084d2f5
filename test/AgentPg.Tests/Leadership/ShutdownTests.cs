using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Leadership;

public sealed class ShutdownTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task StopAsync_DeadlinePassesWithStreamsInFlight_ReleasesThemAndAnotherInstanceCompletesThem()
    {
        await using var h = await Harness.StartAsync(db, o => o.MaxConcurrentStreamingRuns = 5);
        var agent = await h.AgentAsync();
        var stopping = false;
        var arrived = 0;
        var allArrived = new TaskCompletionSource();
        h.Claude.Respond(async (request, ct) =>
        {
            if (!Volatile.Read(ref stopping))
            {
                if (Interlocked.Increment(ref arrived) == 5)
                {
                    allArrived.TrySetResult();
                }

                // The first instance's streams never end on their own.
                await new TaskCompletionSource().Task.WaitAsync(ct);
            }

            return FakeReply.Text("finished by the other instance: " + request.LastUserText);
        });
        var runs = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            runs.Add(await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "job " + i));
        }

        await Eventually.WithinAsync(allArrived.Task, "five streams in flight on the first instance");
        var other = await h.AddClientAsync();
        Volatile.Write(ref stopping, true);

        using (var deadline = new CancellationTokenSource(TimeSpan.FromMilliseconds(300)))
        {
            await h.Client.StopAsync(deadline.Token);
        }

        var responses = await Eventually.WithinAsync(Task.WhenAll(runs.Select(r => other.WaitForRunAsync(r))), "the released runs to complete");
        Assert.All(responses, r => Assert.StartsWith("finished by the other instance", r.Text, StringComparison.Ordinal));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY($1) AND state = 'failed'", runs.ToArray()));
        // Released on shutdown, not rescued: it does not count against MaxAttempts.
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT sum(rescue_attempts)::bigint FROM {schema}.agentpg_runs WHERE id = ANY($1)", runs.ToArray()));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", h.Client.InstanceId));
        Assert.All(await Task.WhenAll(runs.Select(r => other.GetIterationsAsync(r))), its => Assert.Equal("abandoned", its[0].ErrorType));
    }

    [DatabaseFact]
    public async Task StopAsync_WorkThatFinishesBeforeTheDeadline_CompletesOnTheStoppingInstance()
    {
        var toolStarted = new TaskCompletionSource();
        var finishTool = new TaskCompletionSource();
        await using var h = await Harness.StartAsync(db, start: true, tools: new TestTool("finishing", async (_, _, _) =>
        {
            toolStarted.TrySetResult();
            await finishTool.Task;
            return "tool finished during shutdown";
        }));
        var agent = await h.AgentAsync(a => a with { Tools = ["finishing"] });
        h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text(r.ToolResults[0].Content) : FakeReply.ToolUse("finishing", new { }));
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await Eventually.WithinAsync(toolStarted.Task, "the tool to start");

        using var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30));
        var stop = h.Client.StopAsync(deadline.Token);
        Assert.False(stop.IsCompleted);
        finishTool.SetResult();
        await Eventually.WithinAsync(stop, "StopAsync to return once the tool finished");

        // The tool's result was recorded before the instance left; the run continues on the next instance.
        Assert.Equal("tool finished during shutdown", (await h.Client.GetRunToolCallsAsync(run)).Single().Output);
        var other = await h.AddClientAsync(tools: new TestTool("finishing"));
        Assert.Equal("tool finished during shutdown", (await Eventually.WithinAsync(other.WaitForRunAsync(run), "the run to complete")).Text);
    }

    [DatabaseFact]
    public async Task StopAsync_WithASubmittedBatch_AnotherInstanceAdoptsItWithoutSubmittingAgain()
    {
        // The batch processes until the test moves the fake's clock past it, after the stop: the stopping instance cannot finish
        // the run first, however long a loaded machine takes to see the batch submitted.
        var clock = new SteppedClock();
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { BatchProcessingDelay = TimeSpan.FromHours(1), TimeProvider = clock });
        h.Claude.Respond(_ => FakeReply.Text("batch answer"));
        var agent = await h.AgentAsync();
        var run = await h.Client.RunAsync(await h.Client.NewSessionAsync(), agent.Id, "batch it");
        await Eventually.TrueAsync(async () => (await h.Client.GetRunAsync(run)).State is RunState.BatchPending or RunState.BatchProcessing,
            "the batch to be submitted");
        Assert.Equal(h.Client.InstanceId, (await h.Client.GetRunAsync(run)).ClaimedByInstanceId);

        await h.Client.StopAsync();

        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", h.Client.InstanceId));
        clock.Step(TimeSpan.FromHours(1));
        var other = await h.AddClientAsync();
        var response = await Eventually.WithinAsync(other.WaitForRunAsync(run), "the other instance to adopt and finish the batch", TimeSpan.FromSeconds(30));
        Assert.Equal("batch answer", response.Text);
        Assert.Single(h.Claude.Requests, r => r.Method == "POST" && r.Path == "/v1/messages/batches");
        var iteration = Assert.Single(await other.GetIterationsAsync(run));
        Assert.Equal(BatchStatus.Ended, iteration.BatchStatus);
        Assert.Null(iteration.ErrorType);
        var finished = await other.GetRunAsync(run);
        Assert.Equal(RunState.Completed, finished.State);
        // Released on shutdown, not rescued.
        Assert.Equal(0, finished.RescueAttempts);
    }

    [DatabaseFact]
    public async Task StopAsync_DeadlinePassesWhileAToolResultIsBeingWritten_TheResultIsKeptAndTheToolNotRunAgain()
    {
        var calls = 0;
        var returned = new TaskCompletionSource();
        await using var h = await Harness.StartAsync(db, start: true, tools: new TestTool("once", (_, _, _) =>
        {
            Interlocked.Increment(ref calls);
            returned.TrySetResult();
            return Task.FromResult("done once");
        }));
        var agent = await h.AgentAsync(a => a with { Tools = ["once"] });
        h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text(r.ToolResults[0].Content) : FakeReply.ToolUse("once", new { }));

        // The completion write is slow: the deadline passes while it is in flight.
        await using var slow = await db.TriggerAsync("slow_completion", "BEFORE UPDATE", "agentpg_tool_executions",
            "PERFORM pg_sleep(1); RETURN NEW;", when: "OLD.state = 'running' AND NEW.state = 'completed'");
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await Eventually.WithinAsync(returned.Task, "the tool to return");
        using (var deadline = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
        {
            await h.Client.StopAsync(deadline.Token);
        }

        var other = await h.AddClientAsync(tools: new TestTool("once", (_, _, _) =>
        {
            Interlocked.Increment(ref calls);
            return Task.FromResult("done again");
        }));
        Assert.Equal("done once", (await Eventually.WithinAsync(other.WaitForRunAsync(run), "the run to complete")).Text);
        Assert.Equal(1, calls);
    }

    [DatabaseFact]
    public async Task StopAsync_DeadlinePassesWhileAStreamedAnswerIsBeingRecorded_TheAnswerIsKeptAndNotRequestedAgain()
    {
        // D13 for streams: the answer reached message_stop before the deadline; its recording is slow. It is still written,
        // not thrown away and paid for again on another instance.
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("answered once"));

        // The recording waits (inside its transaction) for an advisory lock the test holds until the deadline has passed.
        var gateKey = Random.Shared.Next(1, int.MaxValue);
        await using var slow = await db.TriggerAsync("slow_run_completion", "BEFORE UPDATE", "agentpg_runs",
            $"PERFORM pg_advisory_xact_lock_shared(77002, {gateKey}); RETURN NEW;", when: "OLD.state = 'streaming' AND NEW.state = 'completed'");
        await using var gate = await db.DataSource.OpenConnectionAsync();
        await using (var hold = new NpgsqlCommand($"SELECT pg_advisory_lock(77002, {gateKey})", gate))
        {
            await hold.ExecuteNonQueryAsync();
        }

        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 77002 AND objid = $1 AND objsubid = 2 AND NOT granted",
                (long)gateKey) > 0,
            "the completed stream's recording to be in flight");
        using (var deadline = new CancellationTokenSource(TimeSpan.FromMilliseconds(100)))
        {
            var deadlinePassed = new TaskCompletionSource();
            using var registration = deadline.Token.Register(() => deadlinePassed.TrySetResult());
            var stopping = h.Client.StopAsync(deadline.Token);
            await Eventually.WithinAsync(deadlinePassed.Task, "the stop deadline");
            await using (var release = new NpgsqlCommand($"SELECT pg_advisory_unlock(77002, {gateKey})", gate))
            {
                await release.ExecuteNonQueryAsync();
            }

            await Eventually.WithinAsync(stopping, "the stop");
        }

        var other = await h.AddClientAsync();
        Assert.Equal("answered once", (await Eventually.WithinAsync(other.WaitForRunAsync(run), "the run to complete")).Text);
        Assert.Equal(1, h.Claude.Requests.Count(r => r.IsMessagesCall));
        Assert.Null(Assert.Single(await other.GetIterationsAsync(run)).ErrorType);
    }
}
