using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

public sealed class WorkerBoundsTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task Claim_RoutesRunsOnlyToInstancesWithEveryToolTheAgentNeeds()
    {
        await using var h = await Harness.StartAsync(db, tools: new TestTool("common"));
        var capable = await h.AddClientAsync(tools: [new TestTool("common"), new TestTool("special")]);
        var agent = await h.AgentAsync(a => a with { Tools = ["common", "special"] });
        h.Claude.Respond(_ => FakeReply.Text("ok"));

        var runs = new List<Guid>();
        for (var i = 0; i < 10; i++)
        {
            runs.Add(await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go"));
        }

        await Task.WhenAll(runs.Select(r => h.Client.WaitForRunAsync(r)));
        Assert.Equal([capable.InstanceId], await db.ScalarAsync<string[]>(
            "SELECT array_agg(DISTINCT instance_id) FROM {schema}.agentpg_iterations WHERE run_id = ANY($1)", runs.ToArray()));
    }

    [DatabaseFact]
    public async Task RunsCreatedWhileEverySlotIsBusy_AreClaimedAsSlotsFreeNotAtThePoll()
    {
        // One slot and no polling to speak of: the wake-ups of the queued runs arrive while the slot is taken, so each
        // finishing run must make the worker look again, or the queue stalls until the poll.
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.MaxConcurrentStreamingRuns = 1;
            o.RunPollInterval = TimeSpan.FromMinutes(10);
        });
        var agent = await h.AgentAsync();
        var held = new HeldRequest(h.Claude, "first", _ => FakeReply.Text("ok"));

        var first = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "first");
        await Eventually.WithinAsync(held.Arrived, "the first run's request");
        var queued = new List<Guid>();
        for (var i = 0; i < 10; i++)
        {
            queued.Add(await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "next " + i));
        }

        held.Release();

        await Eventually.WithinAsync(h.Client.WaitForRunAsync(first), "the first run");
        foreach (var run in queued)
        {
            await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "a queued run, claimed when the slot freed");
        }
    }

    [DatabaseFact]
    public async Task MaxConcurrentStreamingRuns_BoundsRunsInFlight()
    {
        await using var h = await Harness.StartAsync(db, o => o.MaxConcurrentStreamingRuns = 2);
        var agent = await h.AgentAsync();
        var inFlight = 0;
        var peak = 0;
        var release = new TaskCompletionSource();
        var twoArrived = new TaskCompletionSource();
        h.Claude.Respond(async (_, ct) =>
        {
            var now = Interlocked.Increment(ref inFlight);
            InterlockedMax(ref peak, now);
            if (now == 2)
            {
                twoArrived.TrySetResult();
            }

            await release.Task.WaitAsync(ct);
            Interlocked.Decrement(ref inFlight);
            return FakeReply.Text("done");
        });

        var runs = new List<Guid>();
        for (var i = 0; i < 6; i++)
        {
            runs.Add(await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go " + i));
        }

        await Eventually.WithinAsync(twoArrived.Task, "two concurrent requests");
        // Give a third claim every chance to happen: wake the worker and let it claim if it were allowed to.
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY($1) AND state = 'pending'", runs.ToArray()) == 4, "four runs wait");
        Assert.Equal(2, Volatile.Read(ref inFlight));
        release.SetResult();
        await Task.WhenAll(runs.Select(r => h.Client.WaitForRunAsync(r)));
        Assert.Equal(2, peak);
    }

    [DatabaseFact]
    public async Task MaxConcurrentTools_BoundsToolsInFlight()
    {
        var inFlight = 0;
        var peak = 0;
        var release = new TaskCompletionSource();
        var threeRunning = new TaskCompletionSource();
        await using var h = await Harness.StartAsync(db, o => o.MaxConcurrentTools = 3, start: true, new TestTool("slow", async (_, _, ct) =>
        {
            var now = Interlocked.Increment(ref inFlight);
            InterlockedMax(ref peak, now);
            if (now == 3)
            {
                threeRunning.TrySetResult();
            }

            await release.Task.WaitAsync(ct);
            Interlocked.Decrement(ref inFlight);
            return "ok";
        }));
        var agent = await h.AgentAsync(a => a with { Tools = ["slow"] });
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text("done")
            : FakeReply.Message([.. Enumerable.Range(0, 8).Select(i => FakeContentBlock.ToolUse("slow", new { }, "toolu_" + i))]) with { StopReason = "tool_use" });

        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "eight calls");
        await Eventually.WithinAsync(threeRunning.Task, "three tools running");
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = $1 AND state = 'pending'", run) == 5, "five executions wait");
        Assert.Equal(3, Volatile.Read(ref inFlight));

        release.SetResult();
        await h.Client.WaitForRunAsync(run);
        Assert.Equal(3, peak);
    }

    [DatabaseFact]
    public async Task PendingToolsScan_ContinuesARunWhoseToolResultsWereNeverWritten()
    {
        await using var h = await Harness.StartAsync(db, o => o.ToolPollInterval = TimeSpan.FromMilliseconds(50), start: true, new TestTool("noop"));
        var agent = await h.AgentAsync(a => a with { Tools = ["noop"] });
        h.Claude.Respond(request => request.ToolResults.Count > 0 ? FakeReply.Text("continued") : FakeReply.ToolUse("noop", new { }));

        // Without the trigger nothing continues the run when its tool finishes: only the periodic scan can.
        await db.ExecuteAsync("ALTER TABLE {schema}.agentpg_tool_executions DISABLE TRIGGER agentpg_trg_tools_complete");
        Guid run;
        try
        {
            run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
            await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
                "SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = $1 AND state = 'completed'", run) == 1, "the tool completes");
        }
        finally
        {
            await db.ExecuteAsync("ALTER TABLE {schema}.agentpg_tool_executions ENABLE TRIGGER agentpg_trg_tools_complete");
        }

        Assert.Equal("continued", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the scan to continue the run")).Text);
    }

    [DatabaseFact]
    public async Task MoreStreamsThanPooledConnections_AllWaitOnTheModelAtOnce_HoldingNoConnection()
    {
        // A pool of 4 and 24 runs whose model calls are all held open: if a model call held a connection (or a
        // transaction), at most 3 could be waiting on the model (LISTEN keeps one), and the rest could not start.
        const int streams = 24;
        var applicationName = "pool-" + Guid.NewGuid().ToString("N")[..12];
        await using var dataSource = TestDatabase.CreateDataSource(b =>
        {
            b.MaxPoolSize = 4;
            b.Timeout = 5;
            b.ApplicationName = applicationName;
        });
        var arrived = 0;
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(async (_, ct) =>
        {
            Interlocked.Increment(ref arrived);
            await gate.Task.WaitAsync(ct);
            return FakeReply.Text("done") with { EventDelay = TimeSpan.FromMilliseconds(5) };
        });
        var client = AgentPgClient.Create(dataSource, db.Options(o =>
        {
            o.ApiKey = claude.ApiKey;
            o.BaseUrl = claude.BaseUrl;
            o.MaxConcurrentStreamingRuns = streams;
        }));
        await using var scope = client;
        await client.StartAsync();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "pool_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var runs = new List<Guid>();
        for (var i = 0; i < streams; i++)
        {
            runs.Add(await client.RunFastAsync(await client.NewSessionAsync(), agent.Id, "stream " + i));
        }

        await Eventually.TrueAsync(() => Volatile.Read(ref arrived) == streams, $"all {streams} model calls to be waiting at once on a pool of 4");
        var listenName = ("agentpg-listen:" + client.InstanceId) is var n && n.Length > 63 ? n[..63] : n;
        var (connections, inTransaction) = await ActivityAsync(applicationName, listenName);
        Assert.True(connections <= 4, $"{connections} connections of the instance are open with a pool of 4");
        Assert.Equal(0, inTransaction);

        gate.SetResult();
        foreach (var run in runs)
        {
            Assert.Equal("done", (await Eventually.WithinAsync(client.WaitForRunAsync(run), "a run to complete")).Text);
        }
    }

    private static async Task<(long Connections, long InTransaction)> ActivityAsync(string applicationName, string listenName)
    {
        await using var command = TestDatabase.DataSource.CreateCommand("""
            SELECT count(*), count(*) FILTER (WHERE state LIKE 'idle in transaction%')
              FROM pg_stat_activity
             WHERE datname = current_database() AND application_name IN ($1, $2)
            """);
        command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = applicationName });
        command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = listenName });
        await using var reader = await command.ExecuteReaderAsync();
        await reader.ReadAsync();
        return (reader.GetInt64(0), reader.GetInt64(1));
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while (value > (current = Volatile.Read(ref target)) && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }
}
