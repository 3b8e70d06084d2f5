using AgentPg.Runs;
using AgentPg.Storage;
using AgentPg.Tests.Infrastructure;
using Npgsql;
using static AgentPg.Tests.Infrastructure.ConnectionSql;

namespace AgentPg.Tests.Runs;

/// <summary>What every state change of a run records (previous_state, finalized_at, a failed run's error type, the claim
/// time), whether the library or a hand-written statement makes it.</summary>
public sealed class RunTransitionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task ClaimAndCompletion_RecordTheTransitionThemselves_WithoutTheBeforeUpdateFunction()
    {
        var run = await db.Seed.RunAsync(agent: await db.Seed.AgentAsync());
        var sql = new RunSql(new SchemaName(db.Schema));

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await ExecuteAsync(connection, "SET LOCAL track_functions = 'pl'");
        await ExecuteAsync(connection, $"SELECT id FROM \"{db.Schema}\".agentpg_claim_runs('transition-test', 100, 'streaming')");
        Assert.Equal(("streaming", "pending", false), await StateAsync(connection, run));

        await using (var batch = new NpgsqlBatch(connection))
        {
            sql.AddComplete(batch, run, "done", StopReasons.EndTurn, new Usage());
            await batch.ExecuteNonQueryAsync();
        }

        Assert.Equal(("completed", "streaming", true), await StateAsync(connection, run));
        // The trigger's condition found nothing for its function to do, twice.
        Assert.Equal(0L, await BeforeUpdateCallsAsync(connection));
    }

    [DatabaseFact]
    public async Task Completion_ReturnsTheModeOfTheSessionsNextRootRun_WithoutAFunctionCall()
    {
        var agent = await db.Seed.AgentAsync();
        var session = await db.Seed.SessionAsync();
        var first = await db.Seed.RunAsync(session, agent, mode: "streaming");
        var next = await db.Seed.RunAsync(session, agent, mode: "batch");
        var sql = new RunSql(new SchemaName(db.Schema));
        try
        {
            await using var connection = await db.DataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            await ExecuteAsync(connection, "SET LOCAL track_functions = 'pl'");
            await ExecuteAsync(connection, $"SELECT id FROM \"{db.Schema}\".agentpg_claim_runs('transition-test', 100, 'streaming')");
            Assert.Equal("batch", await CompleteAsync(connection, sql, first));

            // The session's last root run: nothing waits behind it.
            await ExecuteAsync(connection, $"SELECT id FROM \"{db.Schema}\".agentpg_claim_runs('transition-test', 100, 'batch')");
            Assert.Equal(("batch_submitting", "pending", false), await StateAsync(connection, next));
            Assert.Null(await CompleteAsync(connection, sql, next));
            Assert.Equal(0L, await FunctionCallsAsync(connection, db.Schema, "agentpg_next_root_run_mode"));
        }
        finally
        {
            await db.Seed.FinishRunAsync(first, "cancelled");
            await db.Seed.FinishRunAsync(next, "cancelled");
        }
    }

    [DatabaseFact]
    public async Task HandWrittenStateChanges_StillGetPreviousStateFinalizedAtAndTheErrorType()
    {
        var agent = await db.Seed.AgentAsync();
        var failed = await db.Seed.RunAsync(agent: agent);
        var reopened = await db.Seed.RunAsync(agent: agent);
        await db.Seed.FinishRunAsync(reopened, "cancelled");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await ExecuteAsync(connection, "SET LOCAL track_functions = 'pl'");
        await ExecuteAsync(connection, $"UPDATE \"{db.Schema}\".agentpg_runs SET state = 'failed' WHERE id = '{failed}'");
        await ExecuteAsync(connection, $"UPDATE \"{db.Schema}\".agentpg_runs SET state = 'pending' WHERE id = '{reopened}'");

        Assert.Equal(("failed", "pending", true), await StateAsync(connection, failed));
        Assert.Equal("processing_error", await ScalarAsync<string>(connection, $"SELECT error_type FROM \"{db.Schema}\".agentpg_runs WHERE id = '{failed}'"));
        Assert.Equal(("pending", "cancelled", false), await StateAsync(connection, reopened));
        Assert.Equal(2L, await BeforeUpdateCallsAsync(connection));
    }

    [DatabaseFact]
    public async Task Claim_InATransactionThatBeganBeforeTheRunWasCreated_IsNotRecordedAsBeforeTheCreation()
    {
        var agent = await db.Seed.AgentAsync();
        await using var claimer = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await claimer.BeginTransactionAsync();
        var claimTransactionStart = await ScalarAsync<DateTime>(claimer, "SELECT now()");

        // Created (and committed) by another connection after the claiming transaction began. Every pending run of the class is
        // claimed (earlier tests leave some behind, rolled back).
        var run = await db.Seed.RunAsync(agent: agent);
        var createdAt = await db.ScalarAsync<DateTime>("SELECT created_at FROM {schema}.agentpg_runs WHERE id = $1", run);
        Assert.True(createdAt > claimTransactionStart, $"created {createdAt:O}, claim transaction began {claimTransactionStart:O}");

        await ExecuteAsync(claimer, $"SELECT id FROM \"{db.Schema}\".agentpg_claim_runs('transition-test', 100, 'streaming')");
        var claimedAt = await ScalarAsync<DateTime>(claimer, $"SELECT claimed_at FROM \"{db.Schema}\".agentpg_runs WHERE id = '{run}'");
        Assert.True(claimedAt >= createdAt, $"claimed at {claimedAt:O}, created at {createdAt:O}");
    }

    private static async Task<string?> CompleteAsync(NpgsqlConnection connection, RunSql sql, Guid run)
    {
        // As the worker sends it: the finalized notification deferred (the trigger, which would call the function, skipped).
        await using var batch = new NpgsqlBatch(connection);
        NotifySql.AddDeferOnIndexPlans(batch, AgentPg.Notifications.Channels.RunFinalized);
        sql.AddComplete(batch, run, "done", StopReasons.EndTurn, new Usage());
        await using var reader = await batch.ExecuteReaderAsync();
        return await RunSql.ReadNextRunModeAsync(reader, CancellationToken.None);
    }

    private async Task<(string State, string? Previous, bool Finalized)> StateAsync(NpgsqlConnection connection, Guid run)
    {
        await using var command = new NpgsqlCommand(
            $"SELECT state::text, previous_state::text, finalized_at IS NOT NULL FROM \"{db.Schema}\".agentpg_runs WHERE id = $1", connection);
        command.Parameters.AddWithValue(run);
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync(), $"run {run} not found");
        return (reader.GetString(0), reader.IsDBNull(1) ? null : reader.GetString(1), reader.GetBoolean(2));
    }

    // Calls of agentpg_run_before_update in this transaction so far (track_functions = 'pl'; null before the first call).
    private Task<long> BeforeUpdateCallsAsync(NpgsqlConnection connection) => FunctionCallsAsync(connection, db.Schema, "agentpg_run_before_update");
}
