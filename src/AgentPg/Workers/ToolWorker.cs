using System.Data;
using System.Diagnostics;
using System.Runtime.CompilerServices;
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

    /// <summary>Whether this is a call of Claude's memory tool by an agent with <see cref="AgentDefinition.Memory"/>, which the
    /// engine runs itself (<see cref="Engine.MemoryTool"/>).</summary>
    public bool IsMemoryTool { get; init; }
}

/// <summary>Claims due tool executions this instance can run and executes each in its own task
/// (<see cref="AgentPgOptions.MaxConcurrentTools"/> at a time).</summary>
internal sealed class ToolWorker(Engine engine)
    : ClaimingWorker<ClaimedTool>(engine, engine.ToolWake, engine.Options.MaxConcurrentTools, engine.Options.ToolPollInterval)
{
    private readonly TimeSpan _stuckScanInterval = TimeSpan.FromTicks(engine.Options.ToolPollInterval.Ticks * 60);
    private long _lastStuckScan = engine.Time.GetTimestamp();

    protected override string Name => "tool worker";

    protected override void AddClaim(NpgsqlBatch batch, int count) => Engine.Sql.ToolExecutions.AddClaim(batch, Engine.InstanceId, count);

    protected override ClaimedTool ReadClaimed(NpgsqlDataReader reader) => ToolExecutionSql.ReadClaimed(reader);

    protected override Guid KeyOf(ClaimedTool item) => item.Execution.Id;

    protected override Task ProcessAsync(ClaimedTool item, StopTokens stop) => new ToolRunner(Engine, item).RunAsync(stop);

    /// <summary>Safety net: runs whose tools are all done but whose tool_result message was never written.</summary>
    protected override async Task OnPollAsync(CancellationToken cancellationToken)
    {
        if (Engine.Time.GetElapsedTime(_lastStuckScan) < _stuckScanInterval)
        {
            return;
        }

        _lastStuckScan = Engine.Time.GetTimestamp();
        var command = Engine.Sql.Runs.ContinueStuckPendingToolsCommand(Engine.DataSource);
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
/// <remarks>
/// Every path ends the execution or hands it back (review D1): the tool's result, its failure (retried while attempts
/// remain), a misuse of the transaction it was given, a result the database refuses, or an interruption by the database
/// (connection lost, pool exhausted), which gives the attempt back. When even that cannot be written (the database stays
/// away), the runner ends without it and the leader's stuck-work sweep (<see cref="Maintenance.StuckWorkSweeper"/>) releases
/// the execution, since this instance no longer reports it as in flight.
/// Results obtained before a shutdown's deadline are still written after it (review D13): writes use
/// <see cref="StopTokens.Abandon"/>, not the hard stop; the tool itself gets the hard stop.
/// </remarks>
internal sealed class ToolRunner(Engine engine, ClaimedTool claimed)
{
    private readonly ToolExecution _execution = claimed.Execution;

    // Taken before the execution's result commits: the run may go on and finish before the callback fires.
    private readonly Action<ToolCallEvent>? _onComplete = engine.Callbacks.OnComplete(claimed.Execution.RunId);

    public async Task RunAsync(StopTokens stop)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(stop.HardStop);
        using var registration = engine.InFlight.Register(_execution.RunId, cts);
        var record = stop.Abandon;
        var started = engine.Time.GetTimestamp();
        using var activity = Telemetry.StartTool(claimed, engine.Options.Telemetry.CaptureContent);
        try
        {
            if (_execution.IsAgentTool)
            {
                // Its first write (the child run) is fenced and nothing happens before it.
                engine.Callbacks.FireStart(Event());
                await new AgentToolRunner(engine, claimed).RunAsync(cts.Token).ConfigureAwait(false);
                return;
            }

            if (claimed.IsMemoryTool)
            {
                // Its change commits with its tool_result, as an ITransactionalTool's writes do.
                await RunTransactionalAsync(engine.MemoryTool, started, cts.Token, record).ConfigureAwait(false);
                return;
            }

            if (!engine.Tools.TryGetValue(_execution.ToolName, out var tool))
            {
                // Unregistered here after the claim read this instance's registrations (UnregisterTool writes them in the
                // background): another instance that registers the tool takes the call; without one it fails, saying so.
                if (await HandBackAsync(record).ConfigureAwait(false))
                {
                    return;
                }

                engine.Callbacks.FireStart(Event());
                var message = $"tool not found: {_execution.ToolName} (not registered on instance {engine.InstanceId}, which claimed the call, " +
                    "and no other instance registers it)";
                await CompleteAsync(ToolExecutionState.Failed, null, true, message, started, record).ConfigureAwait(false);
                return;
            }

            if (tool is ITransactionalTool)
            {
                await RunTransactionalAsync(tool, started, cts.Token, record).ConfigureAwait(false);
                return;
            }

            await CheckStillClaimedAsync(null, cts.Token).ConfigureAwait(false);
            engine.Callbacks.FireStart(Event());
            ToolOutput output;
            try
            {
                output = await ExecuteWithTimeoutAsync(tool, null, cts.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (!cts.IsCancellationRequested)
            {
                await HandleFailureAsync(ex, started, record).ConfigureAwait(false);
                return;
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                throw Interrupted(ex, cts.Token);
            }

            await CompleteAsync(output, started, record).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex.IsClaimLost())
        {
            // Cancelled run (the execution is skipped) or rescued: the result is dropped.
            Log.ToolClaimLost(engine.Logger, _execution.Id, _execution.RunId);
        }
        catch (OperationCanceledException) when (cts.IsCancellationRequested || record.IsCancellationRequested)
        {
            // Run cancelled (already recorded) or shutdown (StopAsync releases the execution).
            Log.ToolCancelled(engine.Logger, _execution.Id, _execution.RunId);
        }
        catch (Exception ex)
        {
            await EndUnrecordedAsync(ex, started, record).ConfigureAwait(false);
        }
    }

    /// <summary>The outcome could not be written: end the execution with the reason (or hand it back when the database is
    /// unreachable). If that fails too, the stuck-work sweep releases it.</summary>
    private async Task EndUnrecordedAsync(Exception ex, long started, CancellationToken record)
    {
        Log.ToolResultNotRecorded(engine.Logger, ex, _execution.Id, _execution.ToolName, _execution.RunId);
        try
        {
            if (Transient.IsTransient(ex))
            {
                await ReleaseAsync(Describe(ex), record).ConfigureAwait(false);
            }
            else
            {
                var message = $"The tool's result could not be stored: {Describe(ex)}";
                await CompleteAsync(ToolExecutionState.Failed, message, true, message, started, record).ConfigureAwait(false);
            }
        }
        catch (Exception again) when (again.IsClaimLost())
        {
            Log.ToolClaimLost(engine.Logger, _execution.Id, _execution.RunId);
        }
        catch (Exception again)
        {
            Log.ToolResultNotRecorded(engine.Logger, again, _execution.Id, _execution.ToolName, _execution.RunId);
        }
    }

    /// <summary>The execution is still this instance's (review D9): a cancel committed between the claim and the
    /// registration in <see cref="InFlightWork"/> sent its notification to nobody, and the tool must not run for a cancelled
    /// run. A read without a lock (no write transaction): a cancel or rescue that commits after this statement's snapshot
    /// finds the execution registered, as a cancel during the tool's run does.</summary>
    private async Task CheckStillClaimedAsync(NpgsqlConnection? connection, CancellationToken cancellationToken)
    {
        if (connection is null)
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                engine.Sql.ToolExecutions.AddStillClaimed(batch, _execution, engine.InstanceId);
                await engine.ExecuteNonQueryAsync(batch, cancellationToken).ConfigureAwait(false);
            }

            return;
        }

        var command = engine.Sql.ToolExecutions.StillClaimedCommand(connection, _execution, engine.InstanceId);
        await using (command.ConfigureAwait(false))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task RunTransactionalAsync(ITool tool, long started, CancellationToken cancellationToken, CancellationToken record)
    {
        // At most TransactionalToolSlots at a time, so connections stay for heartbeats, fences and claims (review D8).
        await engine.TransactionalTools.WaitAsync(cancellationToken).ConfigureAwait(false);
        NpgsqlConnection? connection = null;
        NpgsqlTransaction? transaction = null;
        // The tool's body when it has not ended by the time this attempt does (its token fired or its timeout passed, and it
        // is still unwinding or ignores them): it may still be using the connection, which is not thread-safe, so the
        // connection, its transaction and the slot stay the tool's until it ends (ReleaseWhenEndedAsync).
        Task? stillRunning = null;
        try
        {
            try
            {
                connection = await Transient.RetryAsync(async ct => await engine.DataSource.OpenConnectionAsync(ct).ConfigureAwait(false), engine.Time,
                    cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (Transient.IsTransient(ex) && !cancellationToken.IsCancellationRequested)
            {
                // Pool exhausted or database unreachable: the tool has not run; hand the execution back.
                await ReleaseAsync($"no database connection for the tool's transaction: {Describe(ex)}", record).ConfigureAwait(false);
                return;
            }

            // Before BEGIN: the check is not part of the tool's transaction.
            await CheckStillClaimedAsync(connection, cancellationToken).ConfigureAwait(false);
            engine.Callbacks.FireStart(Event());
            transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            ToolOutput output;
            var body = new StrongBox<Task?>();
            try
            {
                output = await ExecuteWithTimeoutAsync(tool, transaction, cancellationToken, body).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                if (body.Value is { IsCompleted: false } running)
                {
                    stillRunning = running;
                }
                else
                {
                    // The tool's writes go away with its failure; the failure is recorded outside the transaction.
                    await RollbackQuietlyAsync(transaction).ConfigureAwait(false);
                }

                if (cancellationToken.IsCancellationRequested)
                {
                    throw ex as OperationCanceledException ?? Interrupted(ex, cancellationToken);
                }

                await HandleFailureAsync(ex, started, record).ConfigureAwait(false);
                return;
            }

            if (TransactionGuard.IsCompleted(transaction))
            {
                // Its writes may be committed already: running it again could make them twice.
                const string message = "The tool committed or rolled back context.Transaction itself. AgentPg commits an " +
                    "ITransactionalTool's transaction together with its result, so the tool must leave it open (use a savepoint " +
                    "to undo part of its work); the execution is not retried.";
                await CompleteAsync(ToolExecutionState.Failed, message, true, message, started, record).ConfigureAwait(false);
                return;
            }

            if ((connection.FullState & (ConnectionState.Executing | ConnectionState.Fetching)) != 0)
            {
                // The result cannot be written on the connection while the tool's reader is open; the same code would do the
                // same on every attempt. Its writes roll back when the connection is closed.
                const string message = "The tool returned while a command or data reader of context.Transaction's connection was " +
                    "still open (a data reader not disposed), so its result and writes could not be committed: dispose every " +
                    "NpgsqlDataReader before returning. The tool's writes are rolled back; the execution is not retried.";
                await CompleteAsync(ToolExecutionState.Failed, message, true, message, started, record).ConfigureAwait(false);
                return;
            }

            string? continuedRunMode = null;
            try
            {
                // Result and the tool's writes commit together; a lost claim rolls both back.
                var batch = new NpgsqlBatch(connection, transaction);
                await using (batch.ConfigureAwait(false))
                {
                    AddComplete(batch, output);
                    engine.Sql.ToolExecutions.AddContinuedRunMode(batch, _execution.RunId);
                    var reader = await batch.ExecuteReaderAsync(record).ConfigureAwait(false);
                    await using (reader.ConfigureAwait(false))
                    {
                        continuedRunMode = await ToolExecutionSql.ReadContinuedRunModeAsync(reader, record).ConfigureAwait(false);
                    }
                }

                await transaction.CommitAsync(record).ConfigureAwait(false);
                WakeContinuedRun(continuedRunMode);
            }
            catch (Exception ex) when (!ex.IsClaimLost() && ex is not OperationCanceledException)
            {
                await RollbackQuietlyAsync(transaction).ConfigureAwait(false);
                if (Transient.IsTransient(ex))
                {
                    // The connection went away: if the commit happened, the fence of the release reports a lost claim.
                    await ReleaseAsync($"the tool's transaction could not be committed: {Describe(ex)}", record).ConfigureAwait(false);
                    return;
                }

                // The tool's writes are rolled back: its attempt failed (retried while attempts remain).
                await HandleFailureAsync(TransactionFailure(ex), started, record).ConfigureAwait(false);
                return;
            }

            FireComplete(output.Text, output.IsError, ErrorMessageOf(output), started, errorIsOutput: output.IsError);
        }
        finally
        {
            if (stillRunning is null)
            {
                await DisposeQuietlyAsync(transaction, connection).ConfigureAwait(false);
                engine.TransactionalTools.Release();
            }
            else
            {
                _ = ReleaseWhenEndedAsync(stillRunning, transaction!, connection!);
            }
        }
    }

    /// <summary>The tool's body outlived its attempt: once it ends, its transaction is rolled back (nothing of it is ever
    /// committed), its connection returned and its slot freed.</summary>
    private async Task ReleaseWhenEndedAsync(Task body, NpgsqlTransaction transaction, NpgsqlConnection connection)
    {
        Log.ToolOutlivedAttempt(engine.Logger, _execution.Id, _execution.ToolName);
        await body.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        await RollbackQuietlyAsync(transaction).ConfigureAwait(false);
        await DisposeQuietlyAsync(transaction, connection).ConfigureAwait(false);
        engine.TransactionalTools.Release();
    }

    private static async Task DisposeQuietlyAsync(NpgsqlTransaction? transaction, NpgsqlConnection? connection)
    {
        try
        {
            if (transaction is not null)
            {
                await transaction.DisposeAsync().ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
        {
            // The connection is gone: the transaction is rolled back by the server.
        }

        if (connection is not null)
        {
            await connection.DisposeAsync().ConfigureAwait(false);
        }
    }

    /// <summary>What a tool threw after its token fired (the run was cancelled, or the client is stopping): an interruption of
    /// the attempt, not a failure of the tool. Reported as one, so that a stop hands the execution back instead of failing it.</summary>
    private OperationCanceledException Interrupted(Exception ex, CancellationToken token)
        => new($"The tool was interrupted (its cancellation token fired) and ended with: {Describe(ex)}", ex, token);

    private static Exception TransactionFailure(Exception ex) => ex is PostgresException { SqlState: PostgresErrorCodes.InFailedSqlTransaction }
        ? new InvalidOperationException(
            "The tool's transaction was aborted by a database error that the tool caught without rethrowing, so its result and its " +
            "writes cannot be committed. An ITransactionalTool must let database errors propagate, or run a statement that may " +
            "fail inside a savepoint (context.Transaction.SaveAsync / RollbackAsync(name)).", ex)
        : ex;

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

    /// <summary>Runs the tool's body until it ends, its token fires or <see cref="AgentPgOptions.ToolTimeout"/> passes; the
    /// body itself is in <paramref name="body"/> (it may still be running when this ends with an exception).</summary>
    private async Task<ToolOutput> ExecuteWithTimeoutAsync(ITool tool, NpgsqlTransaction? transaction, CancellationToken cancellationToken,
        StrongBox<Task?>? body = null)
    {
        var context = new ToolContext(_execution.RunId, claimed.SessionId, claimed.AgentId, _execution.Id, _execution.ToolUseId,
            _execution.AttemptCount, JsonMapping.ToElementDictionary(claimed.VariablesJson), transaction);
        using var timeout = new CancellationTokenSource(engine.Options.ToolTimeout, engine.Time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        try
        {
            // Task.Run: a tool that blocks synchronously must not block the worker.
            if (tool is IContentTool contentTool)
            {
                var contentTask = Task.Run(() => contentTool.ExecuteContentAsync(context, _execution.ToolInput, linked.Token), linked.Token);
                body?.Value = contentTask;
                return ToolOutput.From(await contentTask.WaitAsync(linked.Token).ConfigureAwait(false), engine.Options.MaxToolOutputLength);
            }

            var textTask = Task.Run(() => tool.ExecuteAsync(context, _execution.ToolInput, linked.Token), linked.Token);
            body?.Value = textTask;
            return ToolOutput.FromText(await textTask.WaitAsync(linked.Token).ConfigureAwait(false), engine.Options.MaxToolOutputLength);
        }
        catch (Exception ex) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested
                                   && ex is not (ToolCancelException or ToolDiscardException or ToolSnoozeException))
        {
            // Also when the tool answered its token with an exception of its own (catch and wrap) before the wait noticed the
            // timeout: the attempt timed out either way, and Claude reads the same message whichever came first.
            throw new TimeoutException($"tool timed out after {engine.Options.ToolTimeout} (AgentPgOptions.ToolTimeout)", ex);
        }
    }

    private async Task HandleFailureAsync(Exception ex, long started, CancellationToken cancellationToken)
    {
        switch (ex)
        {
            case ToolCancelException or ToolDiscardException:
                await CompleteAsync(ToolExecutionState.Failed, null, true, ToolOutput.Truncate(ex.Message, engine.Options.MaxToolOutputLength), started, cancellationToken).ConfigureAwait(false);
                return;

            case ToolSnoozeException snooze:
                await WriteAsync((sql, batch, id) => sql.AddSnooze(batch, id, snooze.Duration, snooze.Message), cancellationToken).ConfigureAwait(false);
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
        await WriteAsync((sql, batch, id) => sql.AddRetry(batch, id, delay, message), cancellationToken).ConfigureAwait(false);
        Log.ToolRetrying(engine.Logger, _execution.Id, _execution.ToolName, _execution.AttemptCount, delay, message);
        Telemetry.ToolAttemptFailed(Activity.Current, _execution.ToolName, message);
        WakeAfter(delay);
    }

    /// <summary>The tool is no longer registered on this instance: once this instance's registration row is gone (so that it does
    /// not claim the call again), the execution goes back to pending for another instance that registers the tool, the attempt
    /// given back. False, and nothing written, when no other instance registers it.</summary>
    private async Task<bool> HandBackAsync(CancellationToken cancellationToken)
    {
        // After UnregisterTool's own write, which may still be under way; if the tool was registered again meanwhile, the row
        // stays and this instance claims the call again and runs it.
        await engine.SyncToolRegistration(_execution.ToolName).ConfigureAwait(false);
        var reason = $"tool {_execution.ToolName} is no longer registered on instance {engine.InstanceId}";
        var handedBack = await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                AddFence(batch);
                engine.Sql.ToolExecutions.AddHandBack(batch, _execution.Id, engine.InstanceId, reason);
                var reader = await engine.ExecuteReaderAsync(batch, ct).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    return await ToolExecutionSql.ReadHandedBackAsync(reader, ct).ConfigureAwait(false);
                }
            }
        }, engine.Time, cancellationToken).ConfigureAwait(false);
        if (handedBack)
        {
            Log.ToolReleased(engine.Logger, _execution.Id, _execution.ToolName, reason);
        }

        return handedBack;
    }

    /// <summary>Hands the execution back after an interruption that is not the tool's doing (no connection, connection lost):
    /// the attempt is given back and counted as an interruption; after <see cref="RunRescueOptions.MaxAttempts"/> of them it
    /// fails.</summary>
    private async Task ReleaseAsync(string reason, CancellationToken cancellationToken)
    {
        var maxInterruptions = engine.Options.RunRescue.MaxAttempts;
        await WriteAsync((sql, batch, id) => sql.AddRelease(batch, id, reason, maxInterruptions), cancellationToken).ConfigureAwait(false);
        Log.ToolReleased(engine.Logger, _execution.Id, _execution.ToolName, reason);
        WakeAfter(TimeSpan.Zero);
    }

    private void WakeAfter(TimeSpan delay)
    {
        if (delay <= TimeSpan.Zero)
        {
            engine.ToolWake.Set();
            return;
        }

        // The poll interval would find it too; this makes short delays precise (longer than a timer allows: the poll's job).
        if (delay > Internal.AgentPgOptionsValidator.MaxTimer)
        {
            return;
        }

        _ = Task.Delay(delay, engine.Time).ContinueWith(_ => engine.ToolWake.Set(), TaskScheduler.Default);
    }

    /// <summary>An exception's message as Claude gets it in the tool_result (cut like an output).</summary>
    private string Describe(Exception ex)
        => ToolOutput.Truncate(string.IsNullOrEmpty(ex.Message) ? ex.GetType().Name : ex.Message, engine.Options.MaxToolOutputLength);

    /// <summary>Records the tool's result: completed, or failed without a retry when the result reports an error.</summary>
    private Task CompleteAsync(ToolOutput output, long started, CancellationToken cancellationToken)
        => CompleteAsync(output.IsError ? ToolExecutionState.Failed : ToolExecutionState.Completed, output.Text, output.IsError, ErrorMessageOf(output),
            started, cancellationToken, output.BlocksJson, errorIsOutput: output.IsError);

    private static string? ErrorMessageOf(ToolOutput output)
        => !output.IsError ? null : output.Text.Length > 0 ? output.Text : "The tool reported an error without a message.";

    // errorIsOutput: the error is the result the tool returned (content), not an exception's or AgentPg's message.
    private async Task CompleteAsync(ToolExecutionState state, string? output, bool isError, string? errorMessage, long started, CancellationToken cancellationToken,
        string? blocksJson = null, bool errorIsOutput = false)
    {
        // With the results of the run's other executions that end at the same time, in one transaction; alone (retried while
        // the database is unreachable) when that batch failed.
        var (written, continuedRunMode) = await engine.ToolResults.WriteAsync(
            new ToolResult(_execution, state, output, isError, errorMessage, blocksJson), cancellationToken).ConfigureAwait(false);
        if (!written)
        {
            continuedRunMode = await WriteResultAloneAsync(state, output, isError, errorMessage, blocksJson, cancellationToken).ConfigureAwait(false);
        }

        WakeContinuedRun(continuedRunMode);
        FireComplete(output, isError, errorMessage, started, errorIsOutput);
    }

    private Task<string?> WriteResultAloneAsync(ToolExecutionState state, string? output, bool isError, string? errorMessage, string? blocksJson,
        CancellationToken cancellationToken)
        => Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                AddComplete(batch, state, output, isError, errorMessage, blocksJson);
                engine.Sql.ToolExecutions.AddContinuedRunMode(batch, _execution.RunId);
                var reader = await engine.ExecuteReaderAsync(batch, ct).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    return await ToolExecutionSql.ReadContinuedRunModeAsync(reader, ct).ConfigureAwait(false);
                }
            }
        }, engine.Time, cancellationToken);

    /// <summary>The run continued on this commit: the local run worker of its mode looks at once (other instances learn it from
    /// agentpg_run_state).</summary>
    private void WakeContinuedRun(string? mode)
    {
        if (mode == "streaming")
        {
            engine.StreamingWake.Set();
        }
        else if (mode == "batch")
        {
            engine.BatchWake.Set();
        }
    }

    private void AddComplete(NpgsqlBatch batch, ToolOutput output)
        => AddComplete(batch, output.IsError ? ToolExecutionState.Failed : ToolExecutionState.Completed, output.Text, output.IsError, ErrorMessageOf(output),
            output.BlocksJson);

    private void AddComplete(NpgsqlBatch batch, ToolExecutionState state, string? output, bool isError, string? errorMessage, string? blocksJson = null)
    {
        AddFence(batch);
        engine.Sql.ToolExecutions.AddComplete(batch, _execution.Id, state, output, isError, errorMessage, blocksJson);
    }

    /// <summary>Writes a statement of the execution after its fence (retried while the database is unreachable).</summary>
    private async Task WriteAsync(Action<ToolExecutionSql, NpgsqlBatch, Guid> add, CancellationToken cancellationToken)
    {
        await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                AddFence(batch);
                add(engine.Sql.ToolExecutions, batch, _execution.Id);
                await engine.ExecuteNonQueryAsync(batch, ct).ConfigureAwait(false);
            }
        }, engine.Time, cancellationToken).ConfigureAwait(false);
    }

    private void AddFence(NpgsqlBatch batch) => engine.Sql.ToolExecutions.AddFence(batch, _execution, engine.InstanceId);

    private ToolCallEvent Event() => new()
    {
        RunId = _execution.RunId,
        SessionId = claimed.SessionId,
        ToolName = _execution.ToolName,
        ToolInput = _execution.ToolInput,
        IsAgentTool = _execution.IsAgentTool,
        IterationNumber = claimed.IterationNumber,
    };

    private void FireComplete(string? output, bool isError, string? errorMessage, long started, bool errorIsOutput = false)
    {
        Telemetry.ToolCompleted(Activity.Current, _execution.ToolName, output, isError, errorMessage, errorIsOutput, engine.Options.Telemetry.CaptureContent);
        var e = Event() with
        {
            Output = output,
            IsError = isError,
            ErrorMessage = errorMessage,
            Duration = engine.Time.GetElapsedTime(started),
        };
        engine.Callbacks.FireComplete(e, _onComplete);
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
