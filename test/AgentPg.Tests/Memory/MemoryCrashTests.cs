using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Memory;

/// <summary>Claude's memory tool with a real worker process (samples/WorkerHost) killed between a command's change and the commit
/// of its result.</summary>
public sealed class MemoryCrashTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private Dictionary<string, string> Arguments(FakeClaudeServer claude, string name) => WorkerProcess.CrashTestArguments(TestDatabase.ConnectionString, db.Schema, claude, name);

    /// <summary>Opens a transaction that takes <paramref name="lockSql"/>'s row lock and holds it until disposed.</summary>
    private async Task<(NpgsqlConnection Connection, NpgsqlTransaction Transaction)> HoldLockAsync(string lockSql, Guid id)
    {
        var connection = await db.DataSource.OpenConnectionAsync();
        var transaction = await connection.BeginTransactionAsync();
        await using var command = new NpgsqlCommand(lockSql.Replace("{schema}", $"\"{db.Schema}\"", StringComparison.Ordinal), connection, transaction);
        command.Parameters.Add(new NpgsqlParameter { Value = id });
        await command.ExecuteNonQueryAsync();
        return (connection, transaction);
    }

    private Task WaitBlockedByAsync(NpgsqlConnection holder, string what)
        => Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pg_blocking_pids(pid) @> ARRAY[$1]::int[]", holder.ProcessID) > 0,
            what, TimeSpan.FromSeconds(30));

    [DatabaseFact]
    public async Task Memory_WorkerKilledAfterTheCommandsChangeBeforeItsResultCommits_TheNextInstanceAppliesItExactlyOnce()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text("done: " + request.ToolResults[0].Content)
            : FakeReply.Message(FakeContentBlock.Memory(new { command = "insert", path = "/memories/log.md", insert_line = 0, insert_text = "entry" })) with { StopReason = "tool_use" });
        await using var producer = db.CreateClient();
        var agent = await producer.CreateAgentAsync(new AgentDefinition
        {
            Name = "memory_" + Guid.NewGuid().ToString("N")[..6], Model = "m", Tools = [], Memory = AgentMemory.PerAgent,
        });
        var store = MemoryStoreId.ForAgent(agent.Id);
        await producer.WriteMemoryFileAsync(store, "/memories/log.md", "start\n");
        var session = await producer.NewSessionAsync();

        // The store's lock held: the command waits inside its transaction, after its claim was checked.
        var (storeConnection, storeTransaction) = await HoldLockAsync("SELECT 1 FROM {schema}.agentpg_memory_stores WHERE agent_id = $1 FOR UPDATE", agent.Id);
        await using var first = await WorkerProcess.StartAsync(Arguments(claude, "first"));
        var run = await producer.RunFastAsync(session, agent.Id, "note it");
        await WaitBlockedByAsync(storeConnection, "the memory command to wait for the store's lock");

        // The run's row locked, then the store released: the command writes its change, and the recording of its result (fenced
        // on the run) waits, in the same open transaction.
        var (runConnection, runTransaction) = await HoldLockAsync("SELECT 1 FROM {schema}.agentpg_runs WHERE id = $1 FOR UPDATE", run);
        await storeTransaction.CommitAsync();
        await storeConnection.DisposeAsync();
        await WaitBlockedByAsync(runConnection, "the result of the memory command to wait for the run's lock");
        Assert.Equal("start\n", (await producer.ReadMemoryFileAsync(store, "/memories/log.md"))!.Content);

        await first.KillAsync();
        await runTransaction.RollbackAsync();
        await runConnection.DisposeAsync();
        await using var second = await WorkerProcess.StartAsync(Arguments(claude, "second"));

        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the next instance to run the memory command and finish", TimeSpan.FromSeconds(60));
        Assert.Equal("done: The file /memories/log.md has been edited.", response.Text);
        Assert.Equal("entry\nstart\n", (await producer.ReadMemoryFileAsync(store, "/memories/log.md"))!.Content);
        var call = Assert.Single(await producer.GetRunToolCallsAsync(run));
        Assert.Equal(ToolExecutionState.Completed, call.State);
    }
}
