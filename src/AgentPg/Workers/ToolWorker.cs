using System.Diagnostics;
using System.Text.Json;
using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Workers;

/// <summary>A claimed tool execution and what the worker needs to run it.</summary>
internal sealed record ClaimedTool(ToolExecution Execution, Guid SessionId, Guid AgentId, string VariablesJson, int Depth, int IterationNumber)
{
    /// <summary>The W3C trace context stored with the run: the tool's span continues the run's trace.</summary>
    public string? TraceParent { get; init; }
}

/// <summary>Claims due tool executions this instance can run and executes each in its own task
/// (<see cref="AgentPgOptions.MaxConcurrentTools"/> at a time).</summary>
internal sealed class ToolWorker(Engine engine)
    : ClaimingWorker<ClaimedTool>(engine, engine.ToolWake, engine.Options.MaxConcurrentTools, engine.Options.ToolPollInterval)
{
    private readonly TimeSpan _stuckScanInterval = TimeSpan.FromTicks(engine.Options.ToolPollInterval.Ticks * 60);
    private long _lastStuckScan = engine.Time.GetTimestamp();

    protected override string Name => "tool worker";

    protected override async Task<IReadOnlyList<ClaimedTool>> ClaimAsync(int count, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            // A claim lost in a server crash is harmless: the execution is pending again and its result write is fenced.
            batch.BatchCommands.Add(new NpgsqlBatchCommand(NotifySql.AsyncCommit));
            var claim = new NpgsqlBatchCommand(Engine.Sql.ToolExecutions.Claim);
            claim.Parameters.Add(P.Text(Engine.InstanceId));
            claim.Parameters.Add(P.Int(count));
            batch.BatchCommands.Add(claim);
            var reader = await Engine.ExecuteReaderAsync(batch, cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                var claimed = new List<ClaimedTool>();
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    claimed.Add(new ClaimedTool(ToolExecutionSql.Read(reader), reader.GetGuid(23), reader.GetGuid(24), reader.GetString(25),
                        reader.GetInt32(26), reader.GetInt32(27)) { TraceParent = reader.IsDBNull(28) ? null : reader.GetString(28) });
                }

                return claimed;
            }
        }
    }

    protected override Task ProcessAsync(ClaimedTool item, CancellationToken hardStop) => new ToolRunner(Engine, item).RunAsync(hardStop);

    /// <summary>Safety net: runs whose tools are all done but whose tool_result message was never written.</summary>
    protected override async Task OnPollAsync(CancellationToken cancellationToken)
    {
        if (Engine.Time.GetElapsedTime(_lastStuckScan) < _stuckScanInterval)
        {
            return;
        }

        _lastStuckScan = Engine.Time.GetTimestamp();
        var command = Engine.DataSource.CreateCommand(Engine.Sql.Runs.ContinueStuckPendingTools);
        await using (command.ConfigureAwait(false))
        {
            var continued = (int)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
            if (continued > 0)
            {
                Log.StuckPendingToolsContinued(Engine.Logger, continued);
            }
        }
    }
}

/// <summary>Executes one claimed tool execution and records its outcome (fenced).</summary>
internal sealed class ToolRunner(Engine engine, ClaimedTool claimed)
{
    private readonly ToolExecution _execution = claimed.Execution;

    public async Task RunAsync(CancellationToken hardStop)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(hardStop);
        using var registration = engine.InFlight.Register(_execution.RunId, cts);
        var started = engine.Time.GetTimestamp();
        using var activity = Telemetry.StartTool(claimed, engine.Options.Telemetry.CaptureContent);
        engine.Callbacks.FireStart(Event());
        try
        {
            if (_execution.IsAgentTool)
            {
                await new AgentToolRunner(engine, claimed).RunAsync(cts.Token).ConfigureAwait(false);
                return;
            }

            if (!engine.Tools.TryGetValue(_execution.ToolName, out var tool))
            {
                await CompleteAsync(ToolExecutionState.Failed, null, true, $"tool not found: {_execution.ToolName}", started, cts.Token).ConfigureAwait(false);
                return;
            }

            if (tool is ITransactionalTool)
            {
                await RunTransactionalAsync(tool, started, cts.Token).ConfigureAwait(false);
            }
            else
            {
                string output;
                try
                {
                    output = await ExecuteWithTimeoutAsync(tool, null, cts.Token).ConfigureAwait(false);
                }
                catch (Exception ex) when (!cts.IsCancellationRequested)
                {
                    await HandleFailureAsync(ex, started, cts.Token).ConfigureAwait(false);
                    return;
                }

                await CompleteAsync(ToolExecutionState.Completed, output, false, null, started, cts.Token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex.IsClaimLost())
        {
            // Cancelled run (the execution is skipped) or rescued: the result is dropped.
            Log.ToolClaimLost(engine.Logger, _execution.Id, _execution.RunId);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested)
        {
            // Run cancelled (already recorded) or shutdown (StopAsync releases the execution).
            Log.ToolCancelled(engine.Logger, _execution.Id, _execution.RunId);
        }
    }

    private async Task RunTransactionalAsync(ITool tool, long started, CancellationToken cancellationToken)
    {
        var connection = await engine.DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            await using (transaction.ConfigureAwait(false))
            {
                string output;
                try
                {
                    output = await ExecuteWithTimeoutAsync(tool, transaction, cancellationToken).ConfigureAwait(false);
                }
                catch (Exception ex) when (!cancellationToken.IsCancellationRequested)
                {
                    // The tool's writes go away with its failure; the failure is recorded outside the transaction.
                    await RollbackQuietlyAsync(transaction).ConfigureAwait(false);
                    await HandleFailureAsync(ex, started, cancellationToken).ConfigureAwait(false);
                    return;
                }

                // Result and the tool's writes commit together; a lost claim rolls both back.
                var batch = new NpgsqlBatch(connection, transaction);
                await using (batch.ConfigureAwait(false))
                {
                    AddComplete(batch, ToolExecutionState.Completed, output, false, null);
                    await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
                }

                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                FireComplete(output, false, null, started);
            }
        }
    }

    private static async Task RollbackQuietlyAsync(NpgsqlTransaction transaction)
    {
        try
        {
            await transaction.RollbackAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
        {
            // The connection is gone: the transaction is rolled back by the server.
        }
    }

    private async Task<string> ExecuteWithTimeoutAsync(ITool tool, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
    {
        var context = new ToolContext(_execution.RunId, claimed.SessionId, claimed.AgentId, _execution.Id, _execution.ToolUseId,
            _execution.AttemptCount, JsonMapping.ToElementDictionary(claimed.VariablesJson), transaction);
        using var timeout = new CancellationTokenSource(engine.Options.ToolTimeout, engine.Time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            // Task.Run: a tool that blocks synchronously must not block the worker.
            return await Task.Run(() => tool.ExecuteAsync(context, _execution.ToolInput, linked.Token), linked.Token)
                .WaitAsync(linked.Token).ConfigureAwait(false) ?? "";
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"tool timed out after {engine.Options.ToolTimeout} (AgentPgOptions.ToolTimeout)");
        }
    }

    private async Task HandleFailureAsync(Exception ex, long started, CancellationToken cancellationToken)
    {
        switch (ex)
        {
            case ToolCancelException or ToolDiscardException:
                await CompleteAsync(ToolExecutionState.Failed, null, true, ex.Message, started, cancellationToken).ConfigureAwait(false);
                return;

            case ToolSnoozeException snooze:
                await WriteAsync(engine.Sql.ToolExecutions.Snooze, cancellationToken, P.Interval(snooze.Duration), P.Text(snooze.Message)).ConfigureAwait(false);
                Log.ToolSnoozed(engine.Logger, _execution.Id, _execution.ToolName, snooze.Duration);
                WakeAfter(snooze.Duration);
                return;
        }

        var message = ex is TimeoutException ? ex.Message : Describe(ex);
        if (_execution.AttemptCount >= _execution.MaxAttempts)
        {
            Log.ToolFailed(engine.Logger, ex, _execution.Id, _execution.ToolName, _execution.AttemptCount);
            await CompleteAsync(ToolExecutionState.Failed, message, true, message, started, cancellationToken).ConfigureAwait(false);
            return;
        }

        var delay = RetryBackoff.NextDelay(_execution.AttemptCount, engine.Options.ToolRetry.Jitter);
        await WriteAsync(engine.Sql.ToolExecutions.Retry, cancellationToken, P.Interval(delay), P.Text(message)).ConfigureAwait(false);
        Log.ToolRetrying(engine.Logger, _execution.Id, _execution.ToolName, _execution.AttemptCount, delay, message);
        WakeAfter(delay);
    }

    private void WakeAfter(TimeSpan delay)
    {
        if (delay <= TimeSpan.Zero)
        {
            engine.ToolWake.Set();
            return;
        }

        // The poll interval would find it too; this makes short delays precise.
        _ = Task.Delay(delay, engine.Time).ContinueWith(_ => engine.ToolWake.Set(), TaskScheduler.Default);
    }

    private static string Describe(Exception ex) => string.IsNullOrEmpty(ex.Message) ? ex.GetType().Name : ex.Message;

    private async Task CompleteAsync(ToolExecutionState state, string? output, bool isError, string? errorMessage, long started, CancellationToken cancellationToken)
    {
        await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                AddComplete(batch, state, output, isError, errorMessage);
                await engine.ExecuteNonQueryAsync(batch, ct).ConfigureAwait(false);
            }
        }, engine.Time, cancellationToken).ConfigureAwait(false);
        FireComplete(output, isError, errorMessage, started);
    }

    private void AddComplete(NpgsqlBatch batch, ToolExecutionState state, string? output, bool isError, string? errorMessage)
    {
        AddFence(batch);
        var complete = new NpgsqlBatchCommand(engine.Sql.ToolExecutions.Complete);
        complete.Parameters.Add(P.Uuid(_execution.Id));
        complete.Parameters.Add(P.Text(state.ToDb()));
        complete.Parameters.Add(P.Text(output));
        complete.Parameters.Add(P.Bool(isError));
        complete.Parameters.Add(P.Text(errorMessage));
        batch.BatchCommands.Add(complete);
    }

    private async Task WriteAsync(string sql, CancellationToken cancellationToken, params NpgsqlParameter[] parameters)
    {
        await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                AddFence(batch);
                var command = new NpgsqlBatchCommand(sql);
                command.Parameters.Add(P.Uuid(_execution.Id));
                foreach (var p in parameters)
                {
                    command.Parameters.Add(p.Clone());
                }

                batch.BatchCommands.Add(command);
                await engine.ExecuteNonQueryAsync(batch, ct).ConfigureAwait(false);
            }
        }, engine.Time, cancellationToken).ConfigureAwait(false);
    }

    private void AddFence(NpgsqlBatch batch)
    {
        var fence = new NpgsqlBatchCommand(engine.Sql.ToolExecutions.Fence);
        fence.Parameters.Add(P.Uuid(_execution.Id));
        fence.Parameters.Add(P.Text(engine.InstanceId));
        fence.Parameters.Add(P.Long(_execution.ClaimEpoch));
        batch.BatchCommands.Add(fence);
    }

    private ToolCallEvent Event() => new()
    {
        RunId = _execution.RunId,
        SessionId = claimed.SessionId,
        ToolName = _execution.ToolName,
        ToolInput = _execution.ToolInput,
        IsAgentTool = _execution.IsAgentTool,
        IterationNumber = claimed.IterationNumber,
    };

    private void FireComplete(string? output, bool isError, string? errorMessage, long started)
    {
        Telemetry.ToolCompleted(Activity.Current, _execution.ToolName, output, isError, errorMessage, engine.Options.Telemetry.CaptureContent);
        var e = Event() with
        {
            Output = output,
            IsError = isError,
            ErrorMessage = errorMessage,
            Duration = engine.Time.GetElapsedTime(started),
        };
        engine.Callbacks.FireComplete(e);
        _ = engine.Hooks.ToolCallAsync(e, CancellationToken.None);
    }
}

/// <summary>The reference backoff: attempt⁴ seconds ± jitter, at least 1 s; immediate when jitter is 0.</summary>
internal static class RetryBackoff
{
    public static TimeSpan NextDelay(int attemptCount, double jitter)
    {
        if (jitter <= 0)
        {
            return TimeSpan.Zero;
        }

        var n = Math.Max(attemptCount, 1);
        var seconds = Math.Pow(n, 4);
        seconds += ((Random.Shared.NextDouble() * 2) - 1) * jitter * seconds;
        return TimeSpan.FromSeconds(Math.Max(seconds, 1));
    }
}
