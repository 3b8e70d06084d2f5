using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Maintenance;

/// <summary>The rescue keeps the lock order of every other writer (a run before its tool executions), also when it fails an
/// execution interrupted too often: that failure continues the run through agentpg_trg_tools_complete, which locks the run.</summary>
public sealed class RescueLockOrderTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task RescueFailingAnExecution_WhileItsRunIsCancelled_NoDeadlock()
    {
        // A run waits in pending_tools for one execution held by a dead instance that was already interrupted as often as
        // allowed: the rescue fails it. A cancel of the run holds the run row (its first step) when the rescue starts; the
        // rescue then waits for the run, and the cancel goes on to the executions. With the executions locked before the run
        // (the rescue's old order), each waited for the other and PostgreSQL aborted one with 40P01 (deadlock detected).
        var run = await db.Seed.RunAsync();
        var iteration = await db.Seed.ToolIterationAsync(run);
        var execution = await db.Seed.ToolExecutionAsync(run, iteration, "toolu_1", "lookup", holder: "dead-lock-order", claimedAgo: TimeSpan.FromHours(1));
        await db.ExecuteAsync("UPDATE {schema}.agentpg_tool_executions SET rescue_attempts = 3 WHERE id = $1", execution);

        await using var cancel = await db.DataSource.OpenConnectionAsync();
        await using var rescue = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await cancel.BeginTransactionAsync();
        await ExecuteAsync(cancel, "SELECT 1 FROM {schema}.agentpg_runs WHERE id = $1 FOR NO KEY UPDATE", run);

        var released = ScalarAsync<int>(rescue, "SELECT released FROM {schema}.agentpg_release_instance_work('dead-lock-order', true, 3)");
        await Eventually.TrueAsync(
            async () => released.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", rescue.ProcessID) > 0,
            "the rescue waits for the run row the cancel holds");

        var cancelled = await ScalarAsync<bool>(cancel, "SELECT cancelled FROM {schema}.agentpg_cancel_run($1)", run);
        await transaction.CommitAsync();
        await Eventually.WithinAsync(released, "the rescue");

        Assert.True(cancelled);
        Assert.Equal("cancelled", await db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_runs WHERE id = $1", run));
        Assert.Equal("skipped", await db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_tool_executions WHERE id = $1", execution));
    }

    [DatabaseFact]
    public async Task RescueFailingAnExecution_ContinuesItsRun()
    {
        // The same rescue without a concurrent cancel: the execution fails with the interruption count, and its run continues.
        var run = await db.Seed.RunAsync();
        var iteration = await db.Seed.ToolIterationAsync(run);
        var execution = await db.Seed.ToolExecutionAsync(run, iteration, "toolu_1", "lookup", holder: "dead-continue", claimedAgo: TimeSpan.FromHours(1));
        await db.ExecuteAsync("UPDATE {schema}.agentpg_tool_executions SET rescue_attempts = 3 WHERE id = $1", execution);

        Assert.Equal(1, await db.ScalarAsync<int>("SELECT released FROM {schema}.agentpg_release_instance_work('dead-continue', true, 3)"));

        Assert.Equal("failed", await db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_tool_executions WHERE id = $1", execution));
        Assert.Equal("pending", await db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_runs WHERE id = $1", run));
    }

    [DatabaseFact]
    public async Task CancelOfAWatchedRun_WhileItsChildRunsWorkerWrites_NoDeadlock()
    {
        // A watched run delegated to a child run, which a worker is streaming. The worker's write holds the child's row (its
        // fence) when the cancel starts; the cancel locks the parent, cancels it (a live event: the root's head row) and goes
        // down to the child. The worker's write then appends its own event and waited for the head row the cancel held, while
        // the cancel waited for the child: 40P01, the cancel retried, or the caller's transaction of a run created with
        // ConcurrencyPolicy.Interrupt aborted.
        var agent = await db.Seed.AgentAsync();
        var session = await db.Seed.SessionAsync();
        var parent = await db.Seed.RunAsync(session, agent);
        var iteration = await db.Seed.ToolIterationAsync(parent);
        var child = await db.Seed.ChildRunAsync(parent, agent);
        await db.Seed.ClaimRunAsync(child, "cancel-worker", TimeSpan.Zero);
        await db.ExecuteAsync(
            "INSERT INTO {schema}.agentpg_tool_executions (run_id, iteration_id, tool_use_id, tool_name, tool_input, is_agent_tool, agent_id, state, " +
            "child_run_id) VALUES ($1, $2, 'toolu_1', 'delegate', '{}', true, $4, 'running', $3)", parent, iteration, child, agent);
        await db.ScalarAsync<Guid>("SELECT {schema}.agentpg_mark_run_watched($1)", parent);
        await db.ScalarAsync<Guid>("SELECT {schema}.agentpg_watch_run($1)", parent);

        await using var worker = await db.DataSource.OpenConnectionAsync();
        await using var cancel = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await worker.BeginTransactionAsync();
        await ExecuteAsync(worker, "SELECT 1 FROM {schema}.agentpg_runs WHERE id = $1 FOR NO KEY UPDATE", child);

        var cancelled = ScalarAsync<bool>(cancel, "SELECT cancelled FROM {schema}.agentpg_cancel_run($1)", parent);
        await Eventually.TrueAsync(
            async () => cancelled.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", cancel.ProcessID) > 0,
            "the cancel waits for the child run's row, which the worker holds");

        await ExecuteAsync(worker,
            "INSERT INTO {schema}.agentpg_messages (session_id, run_id, role, content) " +
            "VALUES ($1, $2, 'assistant', '[{\"type\": \"text\", \"text\": \"part of the answer\"}]')", session, child);
        await transaction.CommitAsync();

        Assert.True(await Eventually.WithinAsync(cancelled, "the cancel"));
        Assert.Equal(2L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY ($1) AND state = 'cancelled'", new[] { parent, child }));
    }

    [DatabaseFact]
    public async Task StuckWorkSweepFailingAChildRun_WhileItsParentIsCancelled_NoDeadlock()
    {
        // A live instance stopped working on a child run (not in its held-work report) that was already rescued as often as
        // allowed: the leader's sweep fails it, and failing a child completes its parent's agent-tool execution, which locks
        // the parent. A cancel of the parent holds the parent (its first step) when the sweep starts. With the child locked
        // first and the parent waited for, the cancel, going down to the child, deadlocked with the sweep (40P01).
        var agent = await db.Seed.AgentAsync();
        var parent = await db.Seed.RunAsync(agent: agent);
        var iteration = await db.Seed.ToolIterationAsync(parent);
        var child = await db.Seed.ChildRunAsync(parent, agent);
        var execution = await db.ScalarAsync<Guid>(
            "INSERT INTO {schema}.agentpg_tool_executions (run_id, iteration_id, tool_use_id, tool_name, tool_input, is_agent_tool, agent_id, state, " +
            "child_run_id) VALUES ($1, $2, 'toolu_1', 'delegate', '{}', true, $4, 'running', $3) RETURNING id", parent, iteration, child, agent);
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET parent_tool_execution_id = $2 WHERE id = $1", child, execution);
        await db.Seed.InstanceAsync("unheld-live", TimeSpan.Zero);
        await db.ExecuteAsync("UPDATE {schema}.agentpg_instances SET held_reported_at = now(), held_work = '{}' WHERE id = 'unheld-live'");
        await db.Seed.ClaimRunAsync(child, "unheld-live", TimeSpan.FromHours(1), rescueAttempts: 3);

        await using var cancel = await db.DataSource.OpenConnectionAsync();
        await using var leader = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await cancel.BeginTransactionAsync();
        await ExecuteAsync(cancel, "SELECT 1 FROM {schema}.agentpg_runs WHERE id = $1 FOR NO KEY UPDATE", parent);

        var released = ScalarAsync<int>(leader, "SELECT released FROM {schema}.agentpg_release_unheld_work(interval '0 seconds', 3)");
        await Eventually.TrueAsync(
            async () => released.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", leader.ProcessID) > 0,
            "the sweep skips the child run or waits for its parent");

        var cancelled = await ScalarAsync<bool>(cancel, "SELECT cancelled FROM {schema}.agentpg_cancel_run($1)", parent);
        await transaction.CommitAsync();
        await Eventually.WithinAsync(released, "the sweep");

        Assert.True(cancelled);
        Assert.Equal(2L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY ($1) AND state = 'cancelled'", new[] { parent, child }));
    }

    private async Task ExecuteAsync(NpgsqlConnection connection, string sql, params object[] parameters)
    {
        await using var command = Command(connection, sql, parameters);
        await command.ExecuteNonQueryAsync();
    }

    private async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, params object[] parameters)
    {
        await using var command = Command(connection, sql, parameters);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    private NpgsqlCommand Command(NpgsqlConnection connection, string sql, object[] parameters)
    {
        var command = new NpgsqlCommand(sql.Replace("{schema}", $"\"{db.Schema}\"", StringComparison.Ordinal), connection);
        foreach (var p in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = p });
        }

        return command;
    }
}
