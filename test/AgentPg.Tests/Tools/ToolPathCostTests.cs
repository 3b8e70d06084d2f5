using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;
using static AgentPg.Tests.Infrastructure.ConnectionSql;

namespace AgentPg.Tests.Tools;

/// <summary>What the tool path does not do for work nobody needs: live events of runs nobody watches, notifications the
/// library sends itself after its commit (bench/README.md, "The tool path"). Counted with <c>track_functions = 'pl'</c>.</summary>
public sealed class ToolPathCostTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task UnwatchedRootRun_ToolClaimsCompletionsAndContinuation_CallNoLiveEventFunction()
    {
        var (instance, tool) = await InstanceWithToolAsync();
        var run = await db.Seed.RunAsync(agent: await db.Seed.AgentAsync(tools: [tool]));
        var iteration = await db.Seed.ToolIterationAsync(run, toolExecutions: 2);
        await db.Seed.ToolExecutionAsync(run, iteration, "toolu_1", tool);
        await db.Seed.ToolExecutionAsync(run, iteration, "toolu_2", tool);

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await ExecuteAsync(connection, "SET LOCAL track_functions = 'pl'");
        var claimed = new List<(Guid Id, long Epoch)>();
        await using (var command = new NpgsqlCommand($"SELECT id, claim_epoch FROM \"{db.Schema}\".agentpg_claim_tool_executions($1, 10)", connection))
        {
            command.Parameters.AddWithValue(instance);
            await using var reader = await command.ExecuteReaderAsync();
            while (await reader.ReadAsync())
            {
                claimed.Add((reader.GetGuid(0), reader.GetInt64(1)));
            }
        }

        Assert.Equal(2, claimed.Count);
        foreach (var (id, epoch) in claimed)
        {
            await ExecuteAsync(connection, $"SELECT \"{db.Schema}\".agentpg_fence_tool_execution('{id}', '{instance}', {epoch})");
            await ExecuteAsync(connection,
                $"UPDATE \"{db.Schema}\".agentpg_tool_executions SET state = 'completed', tool_output = 'ok', completed_at = now(), " +
                $"claimed_by_instance_id = NULL WHERE id = '{id}'");
        }

        // The last result continued the run: the tool_result message, back to pending.
        Assert.Equal("pending", await ScalarAsync<string>(connection, $"SELECT state::text FROM \"{db.Schema}\".agentpg_runs WHERE id = '{run}'"));
        Assert.Equal(2L, await ScalarAsync<long>(connection,
            $"SELECT jsonb_array_length(content)::bigint FROM \"{db.Schema}\".agentpg_messages WHERE run_id = '{run}' AND role = 'user'"));
        Assert.Equal(0L, await CallsAsync(connection, "agentpg_run_event_on_tool"));
        Assert.Equal(0L, await CallsAsync(connection, "agentpg_run_event_on_message"));
        Assert.Equal(0L, await CallsAsync(connection, "agentpg_append_run_event"));
    }

    [DatabaseFact]
    public async Task ToolExecutionInsert_NotifiesThroughItsTrigger_OnlyWhenTheTransactionDoesNotDoItItself()
    {
        var run = await db.Seed.RunAsync();
        var iteration = await db.Seed.ToolIterationAsync(run, toolExecutions: 2);

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await ExecuteAsync(connection, "SET LOCAL track_functions = 'pl'");
        await ExecuteAsync(connection, "SET LOCAL agentpg.defer_notify = 'agentpg_tool_pending'");
        await InsertExecutionAsync(connection, run, iteration, "toolu_deferred");
        Assert.Equal(0L, await CallsAsync(connection, "agentpg_notify_tool_created"));

        await ExecuteAsync(connection, "SET LOCAL agentpg.defer_notify = ''");
        await InsertExecutionAsync(connection, run, iteration, "toolu_announced");
        Assert.Equal(1L, await CallsAsync(connection, "agentpg_notify_tool_created"));
        await transaction.RollbackAsync();
    }

    [DatabaseFact]
    public async Task ResultsOfOneRunThatEndTogether_AreWrittenTogether_EachOnce()
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var running = 0;
        var returned = 0;
        var h = await Harness.StartAsync(db, tools: new TestTool("together", async (_, input, ct) =>
        {
            Interlocked.Increment(ref running);
            await gate.Task.WaitAsync(ct);
            Interlocked.Increment(ref returned);
            return "result " + input.GetProperty("n").GetInt32();
        }));
        await using var scope = h;
        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(r => r.ToolResults.Count > 0
            ? FakeReply.Text($"{r.ToolResults.Count} results")
            : FakeReply.Message([.. Enumerable.Range(0, 5).Select(i => FakeContentBlock.ToolUse("together", new { n = i }, $"toolu_{i}"))]) with { StopReason = "tool_use" });
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "five at once");
        await Eventually.TrueAsync(() => Volatile.Read(ref running) == 5, "the five calls to run");

        // The run's row locked: the first result's write waits in its fence while the other four arrive.
        await using (var connection = await db.DataSource.OpenConnectionAsync())
        {
            await using var transaction = await connection.BeginTransactionAsync();
            await ExecuteAsync(connection, $"SELECT 1 FROM \"{db.Schema}\".agentpg_runs WHERE id = '{run}' FOR NO KEY UPDATE");
            gate.SetResult();
            await Eventually.TrueAsync(() => Volatile.Read(ref returned) == 5, "the five tools to return");
            await Eventually.TrueAsync(
                async () => await db.ScalarAsync<long>(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%agentpg_fence_tool_execution%'",
                    db.Schema) == 1,
                "the first result's write to wait for the run's lock");
            await transaction.CommitAsync();
        }

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run to complete");
        Assert.Equal("5 results", response.Text);
        Assert.Equal(Enumerable.Range(0, 5).Select(i => "result " + i), response.ToolCalls.OrderBy(c => c.Output).Select(c => c.Output));
        Assert.All(response.ToolCalls, c => Assert.Equal(ToolExecutionState.Completed, c.State));
        // Each result's row was last written by the transaction that stored it: the first alone, the four that arrived while
        // it waited in one more.
        Assert.Equal(2L, await db.ScalarAsync<long>(
            "SELECT count(DISTINCT xmin::text) FROM {schema}.agentpg_tool_executions WHERE run_id = $1", run));
    }

    private async Task<(string Instance, string Tool)> InstanceWithToolAsync()
    {
        var instance = "cost-" + Guid.NewGuid().ToString("N")[..8];
        var tool = "cost_tool_" + Guid.NewGuid().ToString("N")[..8];
        await db.Seed.InstanceAsync(instance, TimeSpan.Zero);
        await db.ExecuteAsync("INSERT INTO {schema}.agentpg_tools (name, description, input_schema) VALUES ($1, 'A test tool.', '{}')", tool);
        await db.ExecuteAsync("INSERT INTO {schema}.agentpg_instance_tools (instance_id, tool_name) VALUES ($1, $2)", instance, tool);
        return (instance, tool);
    }

    private async Task InsertExecutionAsync(NpgsqlConnection connection, Guid run, Guid iteration, string toolUseId)
        => await ExecuteAsync(connection,
            $"INSERT INTO \"{db.Schema}\".agentpg_tool_executions (run_id, iteration_id, tool_use_id, tool_name, tool_input) " +
            $"VALUES ('{run}', '{iteration}', '{toolUseId}', 'no_such_tool', '{{}}')");

    // Calls of the schema's function in this transaction so far (track_functions = 'pl').
    private Task<long> CallsAsync(NpgsqlConnection connection, string function) => FunctionCallsAsync(connection, db.Schema, function);
}
