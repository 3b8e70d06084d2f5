using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;
using Xunit.Abstractions;

namespace AgentPg.Tests.Leadership;

/// <summary>Real worker processes (samples/WorkerHost) killed, frozen and cut off from PostgreSQL.</summary>
public sealed class CrashTests(SchemaFixture db, ITestOutputHelper output) : IClassFixture<SchemaFixture>
{
    private async Task<AgentDefinition> EffectAgentAsync(AgentPgClient producer)
        => await producer.CreateAgentAsync(new AgentDefinition
        {
            Name = "effects_" + Guid.NewGuid().ToString("N")[..6],
            Model = "claude-sonnet-4-5",
            SystemPrompt = "Record effects.",
            Tools = ["record_effect"],
        });

    private async Task CreateEffectsTableAsync()
        => await db.ExecuteAsync("CREATE TABLE IF NOT EXISTS {schema}.tool_effects (execution_id uuid, run_id uuid, effect text, attempt int, created_at timestamptz DEFAULT now())");

    [DatabaseFact]
    public async Task KillOneOfThreeWorkers_AllRunsCompleteAndEveryToolEffectExistsExactlyOnce()
    {
        await CreateEffectsTableAsync();
        await using var claude = await FakeClaudeServer.StartAsync();
        // A slow stream, then a transactional tool that writes a row, then a slow final answer.
        claude.Respond(request => (request.ToolResults.Count > 0
                ? FakeReply.Text("done: " + request.ToolResults[0].Content)
                : FakeReply.Message(FakeContentBlock.Text("Recording it now."), FakeContentBlock.ToolUse("record_effect", new { effect = request.LastUserText, hold_ms = 400 })) with { StopReason = "tool_use" })
            with { EventDelay = TimeSpan.FromMilliseconds(15) });
        // A survivor starved past its 2-s instance TTL (seen at loads of 30 and more) is evicted, and what it holds is rescued
        // like the victim's: a run held by evicted instances more than RunRescue.MaxAttempts (3) times failed rescue_failed,
        // as documented (99 of 100 runs once, 22 runs rescued after a kill of a worker holding 4). What this test is about is
        // that every run completes with its effect exactly once through kills and evictions, not that limit: lifted here.
        var arguments = new Func<string, Dictionary<string, string>>(name =>
        {
            var args = WorkerProcess.CrashTestArguments(TestDatabase.ConnectionString, db.Schema, claude, name);
            args["max-rescue-attempts"] = "1000";
            return args;
        });
        await using var w1 = await WorkerProcess.StartAsync(arguments("w1"));
        await using var w2 = await WorkerProcess.StartAsync(arguments("w2"));
        await using var w3 = await WorkerProcess.StartAsync(arguments("w3"));
        await using var producer = db.CreateClient();
        var agent = await EffectAgentAsync(producer);

        var runs = new List<Guid>();
        for (var i = 0; i < 100; i++)
        {
            runs.Add(await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, $"effect-{i}"));
        }

        var ids = runs.ToArray();
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY($1) AND state = 'completed'", ids) >= 25, "a quarter of the runs to complete", TimeSpan.FromSeconds(60));

        // Kill the worker that holds the most work right now (runs streaming and tools running).
        var workers = new[] { w1, w2, w3 };
        var held = new Dictionary<string, long>();
        foreach (var w in workers)
        {
            held[w.InstanceId] = await db.ScalarAsync<long>(
                "SELECT (SELECT count(*) FROM {schema}.agentpg_runs WHERE claimed_by_instance_id = $1) + (SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE claimed_by_instance_id = $1)", w.InstanceId);
        }

        var victim = workers.OrderByDescending(w => held[w.InstanceId]).First();
        var killedAt = await db.ScalarAsync<DateTime>("SELECT now()::timestamp");
        await victim.KillAsync();

        try
        {
            await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
                "SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY($1) AND state IN ('completed', 'cancelled', 'failed')", ids) == 100,
                "all 100 runs to end", TimeSpan.FromSeconds(120));
        }
        finally
        {
            // What a failure needs to be understood: the runs not completed (still held, or failed by the rescue after being
            // released too often: survivors starved past their 2-s instance TTL are evicted and rescued too).
            output.WriteLine(await db.ScalarAsync<string>(
                """
                SELECT 'most rescues of one run: ' || max(rescue_attempts) || '; not completed: '
                       || coalesce(string_agg(id || ' ' || state || ' (rescued ' || rescue_attempts || ', held by '
                                              || coalesce(claimed_by_instance_id, 'nobody') || ', ' || coalesce(error_type, 'no error') || ')', '; ')
                                      FILTER (WHERE state <> 'completed'), 'none')
                  FROM {schema}.agentpg_runs WHERE id = ANY($1)
                """, ids));
        }

        var completed = await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY($1) AND state = 'completed'", ids);
        var lastFinished = await db.ScalarAsync<DateTime>("SELECT max(finalized_at)::timestamp FROM {schema}.agentpg_runs WHERE id = ANY($1)", ids);
        var effects = await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.tool_effects WHERE run_id = ANY($1)", ids);
        var duplicates = await db.ScalarAsync<long>(
            "SELECT count(*) FROM (SELECT run_id FROM {schema}.tool_effects WHERE run_id = ANY($1) GROUP BY run_id HAVING count(*) > 1) d", ids);
        var missing = await db.ScalarAsync<long>(
            "SELECT count(*) FROM unnest($1::uuid[]) r(id) WHERE NOT EXISTS (SELECT 1 FROM {schema}.tool_effects e WHERE e.run_id = r.id)", ids);
        var rescued = await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY($1) AND rescue_attempts > 0", ids);
        var rescuedTools = await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = ANY($1) AND rescue_attempts > 0", ids);
        output.WriteLine($"killed {victim.InstanceId} holding {held[victim.InstanceId]} items; runs lost: {100 - completed}; " +
                         $"duplicate tool effects: {duplicates}; missing effects: {missing}; runs rescued: {rescued}; tool executions rescued: {rescuedTools}; " +
                         $"kill → last run completed: {(lastFinished - killedAt).TotalSeconds:0.00} s");

        Assert.Equal(100, completed);
        Assert.Equal(0, duplicates);
        Assert.Equal(0, missing);
        Assert.Equal(100, effects);
        Assert.Equal(100L, await db.ScalarAsync<long>("SELECT count(DISTINCT execution_id) FROM {schema}.tool_effects WHERE run_id = ANY($1)", ids));

        // Claim history: per run, iterations under different claims never overlap in time, and exactly two iterations
        // (the tool round and the answer) completed without being abandoned.
        var overlaps = await db.ScalarAsync<long>(
            """
            SELECT count(*) FROM {schema}.agentpg_iterations a
              JOIN {schema}.agentpg_iterations b ON a.run_id = b.run_id AND a.id <> b.id
                   AND (a.instance_id, a.claim_epoch) IS DISTINCT FROM (b.instance_id, b.claim_epoch)
             WHERE a.run_id = ANY($1) AND a.started_at < b.started_at AND coalesce(a.completed_at, 'infinity') > b.started_at
            """, ids);
        Assert.Equal(0L, overlaps);
        Assert.Equal(200L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_iterations WHERE run_id = ANY($1) AND completed_at IS NOT NULL AND error_type IS NULL", ids));
        Assert.Equal(400L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_messages WHERE run_id = ANY($1)", ids));
    }

    [DatabaseFact]
    public async Task FrozenWorker_WorkIsRescuedElsewhere_ItsLateWriteIsRefused_AndItRegistersAgain()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        var firstArrived = new TaskCompletionSource();
        var releaseFirst = new TaskCompletionSource();
        var calls = 0;
        claude.Respond(async (_, ct) =>
        {
            if (Interlocked.Increment(ref calls) == 1)
            {
                firstArrived.TrySetResult();
                await releaseFirst.Task.WaitAsync(ct);
                return FakeReply.Text("late answer from the frozen worker");
            }

            return FakeReply.Text("answer from the survivor");
        });
        await using var a = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(TestDatabase.ConnectionString, db.Schema, claude, "a"));
        await using var b = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(TestDatabase.ConnectionString, db.Schema, claude, "b"));
        await using var producer = db.CreateClient();
        var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = "frozen_" + Guid.NewGuid().ToString("N")[..6], Model = "m", Tools = [] });
        var session = await producer.NewSessionAsync();
        var run = await producer.RunFastAsync(session, agent.Id, "who answers?");
        await Eventually.WithinAsync(firstArrived.Task, "the first worker's request");
        var holder = (await producer.GetRunAsync(run)).ClaimedByInstanceId;
        var frozen = holder == a.InstanceId ? a : b;

        frozen.Pause();
        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the survivor to finish the run", TimeSpan.FromSeconds(30));
        Assert.Equal("answer from the survivor", response.Text);
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", frozen.InstanceId) == 0,
            "the frozen instance to be evicted");

        // Thaw it with its answer: the stream completes, the write is refused by the fence, and it registers again.
        releaseFirst.SetResult();
        await frozen.ThawAndStopAsync(db);

        var messages = await producer.GetMessagesAsync(session);
        Assert.Equal(["who answers?", "answer from the survivor"], messages.Select(m => m.Content.Single().Text));
        var finished = await producer.GetRunAsync(run);
        Assert.Equal(RunState.Completed, finished.State);
        Assert.Equal("answer from the survivor", finished.ResponseText);
        var iterations = await producer.GetIterationsAsync(run);
        // The frozen worker's iteration was abandoned and the survivor's answered. Between them, only abandoned ones: with an
        // instance TTL of 2 s a survivor starved that long (seen once at load 30) is evicted in turn, and its iteration is
        // rescued and repeated before it answers.
        Assert.Equal("abandoned", iterations[0].ErrorType);
        Assert.Null(iterations[^1].ErrorType);
        Assert.All(iterations.Skip(1).SkipLast(1), i => Assert.Equal("abandoned", i.ErrorType));
        Assert.Contains("STOPPED", frozen.Output, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task BatchRun_SurvivesTheDeathOfTheInstanceThatSubmittedIt()
    {
        // The batch processes until the test moves the fake's clock past it, after the kill: its submitter cannot finish the
        // run first, however long a loaded machine takes to see the batch submitted.
        var clock = new SteppedClock();
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { BatchProcessingDelay = TimeSpan.FromHours(1), TimeProvider = clock });
        claude.Respond(_ => FakeReply.Text("batch answer"));
        await using var producer = db.CreateClient();
        var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = "batchsurvivor_" + Guid.NewGuid().ToString("N")[..6], Model = "m", Tools = [] });
        await using var submitter = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(TestDatabase.ConnectionString, db.Schema, claude, "submitter"));
        var run = await producer.RunAsync(await producer.NewSessionAsync(), agent.Id, "batch it");
        await Eventually.TrueAsync(async () => (await producer.GetRunAsync(run)).State is RunState.BatchPending or RunState.BatchProcessing,
            "the batch to be submitted");
        Assert.Equal(submitter.InstanceId, (await producer.GetRunAsync(run)).ClaimedByInstanceId);

        await submitter.KillAsync();
        clock.Step(TimeSpan.FromHours(1));
        await using var survivor = db.CreateClient(o =>
        {
            o.ApiKey = claude.ApiKey;
            o.BaseUrl = claude.BaseUrl;
            o.InstanceTtl = TimeSpan.FromSeconds(2);
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(250);
            o.LeaderTtl = TimeSpan.FromSeconds(1);
            o.RunRescue.Interval = TimeSpan.FromMilliseconds(300);
        });
        await survivor.StartAsync();

        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the survivor to adopt and finish the batch", TimeSpan.FromSeconds(30));
        Assert.Equal("batch answer", response.Text);
        Assert.Single(claude.Requests, r => r.Method == "POST" && r.Path == "/v1/messages/batches");
        var iteration = Assert.Single(await producer.GetIterationsAsync(run));
        Assert.Equal(BatchStatus.Ended, iteration.BatchStatus);
    }

    [PrivateClusterFact]
    public async Task PostgresRestartedMidLoad_WorkersReconnectAndEveryRunCompletes()
    {
        await using var cluster = await PrivateCluster.StartAsync();
        await using var dataSource = cluster.CreateDataSource();
        await new AgentPgMigrator(dataSource).MigrateAsync();
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(request => FakeReply.Text("answer to " + request.LastUserText) with { EventDelay = TimeSpan.FromMilliseconds(40) });
        var arguments = new Func<string, Dictionary<string, string>>(name =>
        {
            var args = WorkerProcess.CrashTestArguments(cluster.ConnectionString, "public", claude, name);
            // Only notifications (and the catch-up poll after a reconnect) can pick up new work quickly.
            args["poll-ms"] = "60000";
            return args;
        });
        await using var w1 = await WorkerProcess.StartAsync(arguments("p1"));
        await using var w2 = await WorkerProcess.StartAsync(arguments("p2"));
        await using var producer = AgentPgClient.Create(dataSource, new AgentPgOptions { RunPollInterval = TimeSpan.FromMilliseconds(200) });
        var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = "restart", Model = "m", Tools = [] });
        var runs = new List<Guid>();
        for (var i = 0; i < 40; i++)
        {
            runs.Add(await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, "r" + i));
        }

        await Eventually.TrueAsync(async () => await CountCompletedAsync(dataSource, runs) >= 10, "ten runs to complete", TimeSpan.FromSeconds(30));
        await cluster.RestartAsync();

        await Eventually.TrueAsync(async () => await CountCompletedAsync(dataSource, runs) == 40, "every run to complete after the restart", TimeSpan.FromSeconds(60));

        // New runs after the restart are dispatched by notification: the workers listen again.
        var started = DateTime.UtcNow;
        var after = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            after.Add(await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, "after" + i));
        }

        await Eventually.TrueAsync(async () => await CountCompletedAsync(dataSource, after) == 5, "runs created after the restart to complete", TimeSpan.FromSeconds(20));
        output.WriteLine($"runs created after the restart completed in {(DateTime.UtcNow - started).TotalSeconds:0.00} s (worker poll interval 60 s)");
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(15));
        Assert.Equal(0L, await ScalarAsync(dataSource, "SELECT count(*) FROM agentpg_runs WHERE state = 'failed'"));
    }

    private static async Task<long> CountCompletedAsync(NpgsqlDataSource dataSource, List<Guid> runs)
    {
        try
        {
            await using var command = dataSource.CreateCommand("SELECT count(*) FROM agentpg_runs WHERE id = ANY($1) AND state = 'completed'");
            command.Parameters.Add(new NpgsqlParameter { Value = runs.ToArray() });
            return (long)(await command.ExecuteScalarAsync())!;
        }
        catch (NpgsqlException)
        {
            return -1; // the server is restarting
        }
    }

    private static async Task<long> ScalarAsync(NpgsqlDataSource dataSource, string sql)
    {
        await using var command = dataSource.CreateCommand(sql);
        return (long)(await command.ExecuteScalarAsync())!;
    }
}
