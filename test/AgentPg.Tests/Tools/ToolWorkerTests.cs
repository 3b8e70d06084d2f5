using System.Diagnostics;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Tools;

/// <summary>How the tool worker starts tools: not for cancelled runs (review D9), not beyond what the pool can give
/// transactional tools (review D8).</summary>
public sealed class ToolWorkerTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    [DatabaseFact]
    public async Task CancelBetweenClaimAndStart_TheToolBodyNeverRuns()
    {
        var bodyRuns = 0;
        using var atSpan = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        // The tool's span starts after the execution is registered as in flight and before the worker checks that it still
        // holds it: the listener holds the worker there while the test cancels the run.
        using var listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == "AgentPg",
            Sample = (ref ActivityCreationOptions<ActivityContext> o)
                => o.Name == "execute_tool late_d9" ? ActivitySamplingResult.AllData : ActivitySamplingResult.None,
            ActivityStarted = a =>
            {
                if (a.OperationName == "execute_tool late_d9")
                {
                    atSpan.Set();
                    release.Wait(s_timeout);
                }
            },
        };
        ActivitySource.AddActivityListener(listener);
        try
        {
            var h = await Harness.StartAsync(db, tools: new TestTool("late_d9", (_, _, _) =>
            {
                Interlocked.Increment(ref bodyRuns);
                return Task.FromResult("ran");
            }));
            await using var scope = h;
            var agent = await h.AgentAsync(a => a with { Tools = null });
            h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text("done") : FakeReply.ToolUse("late_d9", new { }));
            var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
            Assert.True(await Task.Run(() => atSpan.Wait(s_timeout)), "the worker to claim the execution");

            // A cancel that commits after the claim, whose notification reached the instance before the execution was
            // registered as in flight (here: not sent at all).
            await using (var connection = await db.DataSource.OpenConnectionAsync())
            {
                await using var transaction = await connection.BeginTransactionAsync();
                await Execute(connection, "SET LOCAL agentpg.defer_notify = 'agentpg_run_finalized'");
                await Execute(connection, $"SELECT * FROM \"{db.Schema}\".agentpg_cancel_run($1)", run);
                await transaction.CommitAsync();
            }

            release.Set();
            Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(run)).State);
            await h.Client.StopAsync();
            Assert.Equal(0, bodyRuns);
            Assert.Equal(ToolExecutionState.Skipped, Assert.Single(await h.Client.GetRunToolCallsAsync(run)).State);
        }
        finally
        {
            release.Set();
        }
    }

    [DatabaseFact]
    public async Task TransactionalTools_OnASmallPool_LeaveConnectionsForHeartbeats()
    {
        await using var dataSource = TestDatabase.CreateDataSource(b =>
        {
            b.MaxPoolSize = 4;
            b.Timeout = 2;
        });
        var gate = new TaskCompletionSource();
        var running = 0;
        var mostAtOnce = 0;
        await using var claude = await FakeClaudeServer.StartAsync();
        var client = AgentPgClient.Create(dataSource, db.Options(o =>
        {
            o.ApiKey = claude.ApiKey;
            o.BaseUrl = claude.BaseUrl;
            o.MaxConcurrentTools = 8;
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(300);
            o.InstanceTtl = TimeSpan.FromSeconds(3);
        }));
        await using var scope = client;
        client.RegisterTool(new TransactionalTool("hold", async (ctx, _, ct) =>
        {
            var now = Interlocked.Increment(ref running);
            InterlockedMax(ref mostAtOnce, now);
            try
            {
                await gate.Task.WaitAsync(ct);
                return "held " + ctx.ToolUseId;
            }
            finally
            {
                Interlocked.Decrement(ref running);
            }
        }));
        await client.StartAsync();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "pool_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        claude.Respond(r => r.ToolResults.Count > 0
            ? FakeReply.Text($"{r.ToolResults.Count} results")
            : FakeReply.Message([.. Enumerable.Range(0, 8).Select(i => FakeContentBlock.ToolUse("hold", new { }, $"toolu_{i}"))]) with { StopReason = "tool_use" });
        var run = await client.RunFastAsync(await client.NewSessionAsync(), agent.Id, "hold eight");
        await Eventually.TrueAsync(() => Volatile.Read(ref running) > 0, "a transactional tool to run");

        // While the tools hold their connections, the instance keeps heartbeating (it would be evicted otherwise). Without the
        // reserve no heartbeat could get a connection until the gate opens: the default deadline, not a short one that the
        // 300-ms heartbeat has to meet on a loaded machine.
        var first = await HeartbeatAsync(client.InstanceId);
        await Eventually.TrueAsync(async () => await HeartbeatAsync(client.InstanceId) > first, "a heartbeat while the tools hold connections");
        var second = await HeartbeatAsync(client.InstanceId);
        await Eventually.TrueAsync(async () => await HeartbeatAsync(client.InstanceId) > second, "another heartbeat while the tools hold connections");

        gate.SetResult();
        var response = await Eventually.WithinAsync(client.WaitForRunAsync(run), "the run to complete", s_timeout);
        Assert.Equal("8 results", response.Text);
        Assert.All(response.ToolCalls, c => Assert.Equal(ToolExecutionState.Completed, c.State));
        // MaxPoolSize 4: 1 for LISTEN, 2 kept for heartbeats, fences and claims.
        Assert.Equal(1, mostAtOnce);
    }

    [DatabaseFact]
    public async Task StartAsync_PoolTooSmallForTransactionalTools_ThrowsAndSaysWhatToRaise()
    {
        await using var dataSource = TestDatabase.CreateDataSource(b => b.MaxPoolSize = 3);
        var client = AgentPgClient.Create(dataSource, db.Options());
        await using var scope = client;
        client.RegisterTool(new TransactionalTool("tx", (_, _, _) => Task.FromResult("ok")));

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => client.StartAsync());

        Assert.Contains("MaxPoolSize (3)", error.Message, StringComparison.Ordinal);
        Assert.Contains("at least 4", error.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task HardStop_ToolThatEndsWithAnExceptionOfItsOwn_IsHandedBackNotFailed()
    {
        // A tool that turns its cancellation into an exception of its own (catch and wrap), at once, when its token fires. The
        // stop's deadline has passed: the execution is handed back for another instance, like one whose tool threw an
        // OperationCanceledException. Before, it failed for good: Claude got "The tool's result could not be stored: search
        // aborted" as the tool's result.
        var search = new CancellationWrappingTool();
        var h = await Harness.StartAsync(db, tools: search);
        await using var scope = h;
        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text("done") : FakeReply.ToolUse("search", new { }));
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await Eventually.WithinAsync(search.Started, "the tool to start");
        search.OpenGate();
        await Eventually.WithinAsync(search.Listening, "the tool to listen to its token");

        await h.Client.StopAsync(new CancellationToken(true));

        Assert.Equal("pending, 0 attempts, no error", await db.ScalarAsync<string>(
            "SELECT state::text || ', ' || attempt_count || ' attempts, ' || coalesce(error_message, 'no error') FROM {schema}.agentpg_tool_executions WHERE run_id = $1",
            run));
        Assert.Equal(RunState.PendingTools, (await h.Client.GetRunAsync(run)).State);
    }

    [DatabaseFact]
    public async Task TransactionalTool_StillRunningAfterItsTimeout_KeepsItsConnectionUntilItEnds_ThenRollsBack()
    {
        // A transactional tool whose statement ignores its token (here: waits for a lock the test holds) past ToolTimeout. The
        // attempt times out and is retried; the first body still runs on its connection, which is not thread-safe. Before, the
        // worker rolled back and returned that connection while the body was using it: the body's next command failed with an
        // ArgumentOutOfRangeException from inside Npgsql and the session stayed 'idle in transaction', holding the body's locks.
        // Now the connection stays the body's until it ends, and its transaction is rolled back then: nothing of it commits.
        await using var dataSource = TestDatabase.CreateDataSource(_ => { });
        await db.ExecuteAsync("CREATE TABLE IF NOT EXISTS {schema}.late_writes (attempt int)");
        var table = $"\"{db.Schema}\".late_writes";
        var lockKey = Random.Shared.NextInt64(1, long.MaxValue);
        var timeouts = new HeldTimeouts(TimeSpan.FromMinutes(17));
        var late = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var holder = await db.DataSource.OpenConnectionAsync();
        await Execute(holder, "SELECT pg_advisory_lock($1)", lockKey);
        await using var claude = await FakeClaudeServer.StartAsync();
        var client = AgentPgClient.Create(dataSource, db.Options(o =>
        {
            o.ApiKey = claude.ApiKey;
            o.BaseUrl = claude.BaseUrl;
            o.ToolTimeout = timeouts.Timeout;
            o.TimeProvider = timeouts;
        }));
        await using var scope = client;
        client.RegisterTool(new TransactionalTool("book", async (ctx, _, _) =>
        {
            if (ctx.Attempt > 1)
            {
                return "booked on attempt " + ctx.Attempt;
            }

            try
            {
                await using (var wait = new NpgsqlCommand("SELECT pg_advisory_xact_lock($1) /* late tool body */", ctx.Transaction!.Connection, ctx.Transaction))
                {
                    wait.Parameters.Add(new NpgsqlParameter { Value = lockKey });
                    await wait.ExecuteNonQueryAsync(CancellationToken.None);
                }

                await using (var insert = new NpgsqlCommand($"INSERT INTO {table} VALUES (1)", ctx.Transaction.Connection, ctx.Transaction))
                {
                    await insert.ExecuteNonQueryAsync(CancellationToken.None);
                }

                late.TrySetResult("written");
            }
            catch (Exception ex)
            {
                late.TrySetResult($"{ex.GetType().Name}: {ex.Message}");
            }

            return "late";
        }));
        await client.StartAsync();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "late_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text("result: " + r.ToolResults[0].Content) : FakeReply.ToolUse("book", new { }));
        var run = await client.RunFastAsync(await client.NewSessionAsync(), agent.Id, "book it");
        const string waiting = "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%late tool body%' AND pid <> pg_backend_pid() AND state <> 'idle'";
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(waiting + " AND wait_event_type = 'Lock'") == 1, "the tool to wait for the lock");

        await timeouts.FireNextAsync();
        var response = await Eventually.WithinAsync(client.WaitForRunAsync(run), "the run to complete with the second attempt", s_timeout);
        Assert.Equal("result: booked on attempt 2", response.Text);
        await Execute(holder, "SELECT pg_advisory_unlock($1)", lockKey);

        Assert.Equal("written", await Eventually.WithinAsync(late.Task, "the first body to end"));
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(waiting) == 0, "the first body's transaction to end");
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }

    private async Task<DateTime> HeartbeatAsync(string instanceId)
        => await db.ScalarAsync<DateTime>("SELECT last_heartbeat_at FROM {schema}.agentpg_instances WHERE id = $1", instanceId);

    private static void InterlockedMax(ref int target, int value)
    {
        int current;
        while ((current = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, current) != current)
        {
        }
    }

    private static async Task Execute(NpgsqlConnection connection, string sql, params object[] parameters)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        foreach (var p in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = p });
        }

        await command.ExecuteNonQueryAsync();
    }

    private sealed class TransactionalTool(string name, Func<ToolContext, JsonElement, CancellationToken, Task<string>> execute) : ITransactionalTool
    {
        public string Name => name;

        public string Description => "A transactional test tool";

        public ToolSchema InputSchema { get; } = new();

        public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken) => execute(context, input, cancellationToken);
    }
}
