using AgentPg.Runs;
using AgentPg.Storage;
using AgentPg.Tests.Infrastructure;
using AgentPg.Workers;
using Npgsql;

namespace AgentPg.Tests.Runs;

/// <summary>What <see cref="RunFailurePolicy"/> records for a claimed run whose work failed.</summary>
public sealed class RunFailureRecordingTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly Usage s_usage = new() { InputTokens = 11, OutputTokens = 7, CacheCreationInputTokens = 3, CacheReadInputTokens = 2 };

    private static StopTokens NoStop => new(CancellationToken.None, CancellationToken.None);

    [DatabaseFact]
    public async Task FailAsync_RecordsTheFailureOnTheRunAndItsCurrentIteration()
    {
        var (engine, claimed, iteration) = await ClaimedRunAsync("failer-1");

        await new RunFailurePolicy(engine).FailAsync(claimed, ErrorTypes.ModelError, "Claude kept failing");

        var runId = claimed.Run.Id;
        Assert.Equal("failed|model_error|Claude kept failing|11|7|3|2|", await RunAsync(runId));
        Assert.Equal("model_error|Claude kept failing|11|7|3|2|true", await IterationAsync(iteration));
    }

    [DatabaseFact]
    public async Task FailAsync_AfterTheClaimWasLost_WritesNothing()
    {
        var (engine, claimed, iteration) = await ClaimedRunAsync("failer-2");
        await db.Seed.ClaimRunAsync(claimed.Run.Id, "someone-else", TimeSpan.Zero);

        await new RunFailurePolicy(engine).FailAsync(claimed, ErrorTypes.ModelError, "too late");

        Assert.Equal("streaming|||0|0|0|0|someone-else", await RunAsync(claimed.Run.Id));
        Assert.Equal("||0|0|0|0|false", await IterationAsync(iteration));
    }

    [DatabaseFact]
    public async Task GuardAsync_UnexpectedError_FailsTheRunAsAProcessingError()
    {
        var (engine, claimed, iteration) = await ClaimedRunAsync("failer-3");

        await new RunFailurePolicy(engine).GuardAsync(claimed, (_, _) => throw new InvalidOperationException("boom"), NoStop);

        Assert.Equal("failed|processing_error|Processing the run failed: boom|11|7|3|2|", await RunAsync(claimed.Run.Id));
        Assert.Equal("processing_error|Processing the run failed: boom|11|7|3|2|true", await IterationAsync(iteration));
    }

    [DatabaseFact]
    public async Task GuardAsync_RunFailure_FailsTheRunWithItsType()
    {
        var (engine, claimed, _) = await ClaimedRunAsync("failer-4");

        await new RunFailurePolicy(engine).GuardAsync(claimed,
            (_, _) => throw new RunFailureException(ErrorTypes.ContinuationLimit, "too many continuations"), NoStop);

        Assert.Equal("failed|continuation_limit|too many continuations|11|7|3|2|", await RunAsync(claimed.Run.Id));
    }

    [DatabaseFact]
    public async Task GuardAsync_DatabaseUnreachable_LeavesTheRunClaimedForTheRescue()
    {
        var (engine, claimed, iteration) = await ClaimedRunAsync("failer-5");

        await new RunFailurePolicy(engine).GuardAsync(claimed,
            (_, _) => throw new NpgsqlException("connection lost", new IOException("reset")), NoStop);

        Assert.Equal("streaming|||0|0|0|0|failer-5", await RunAsync(claimed.Run.Id));
        Assert.Equal("||0|0|0|0|false", await IterationAsync(iteration));
    }

    [DatabaseFact]
    public async Task GuardAsync_CancelledRun_WritesNothing()
    {
        var (engine, claimed, _) = await ClaimedRunAsync("failer-6");
        using var hardStop = new CancellationTokenSource();

        await new RunFailurePolicy(engine).GuardAsync(claimed, async (token, _) =>
        {
            await hardStop.CancelAsync();
            token.ThrowIfCancellationRequested();
        }, new StopTokens(hardStop.Token, CancellationToken.None));

        Assert.Equal("streaming|||0|0|0|0|failer-6", await RunAsync(claimed.Run.Id));
    }

    /// <summary>A streaming run claimed by <paramref name="instanceId"/> with an iteration in progress that used
    /// <see cref="s_usage"/> so far.</summary>
    private async Task<(Engine Engine, ClaimedRun Claimed, Guid Iteration)> ClaimedRunAsync(string instanceId)
    {
        var engine = TestEngine.Create(db, instanceId);
        var runId = await db.Seed.RunAsync();
        await db.Seed.ClaimRunAsync(runId, instanceId, TimeSpan.Zero);
        var iteration = await db.Seed.RunningIterationAsync(runId);
        await using var command = db.DataSource.CreateCommand(engine.Sql.Runs.Get);
        command.Parameters.Add(new NpgsqlParameter { Value = runId });
        await using var reader = await command.ExecuteReaderAsync();
        Assert.True(await reader.ReadAsync());
        var claimed = new ClaimedRun(RunSql.Read(reader), null) { IterationUsage = s_usage };
        Assert.Equal(iteration, claimed.IterationId);
        return (engine, claimed, iteration);
    }

    private Task<string> RunAsync(Guid run)
        => db.ScalarAsync<string>(
            "SELECT concat_ws('|', state::text, coalesce(error_type, ''), coalesce(error_message, ''), input_tokens, output_tokens, " +
            "cache_creation_input_tokens, cache_read_input_tokens, coalesce(claimed_by_instance_id, '')) FROM {schema}.agentpg_runs WHERE id = $1", run);

    private Task<string> IterationAsync(Guid iteration)
        => db.ScalarAsync<string>(
            "SELECT concat_ws('|', coalesce(error_type, ''), coalesce(error_message, ''), input_tokens, output_tokens, cache_creation_input_tokens, " +
            "cache_read_input_tokens, (completed_at IS NOT NULL)::text) FROM {schema}.agentpg_iterations WHERE id = $1", iteration);
}
