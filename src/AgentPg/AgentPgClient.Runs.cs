using System.Data.Common;
using System.Text.Json.Nodes;
using AgentPg.Internal;
using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <inheritdoc cref="RunFastAsync(Guid, Guid, string, RunOptions?, CancellationToken)"/>
    /// <summary>Creates a batch run: Claude's Message Batches API answers at half the price, within minutes to hours.</summary>
    /// <remarks>Each model call of the run (one per tool round) is its own message batch; tools run as soon as a result is in.</remarks>
    public Task<Guid> RunAsync(Guid sessionId, Guid agentId, string prompt, RunOptions? options = null, CancellationToken cancellationToken = default)
        => CreateRunAsync(null, sessionId, agentId, prompt, RunMode.Batch, options, cancellationToken);

    /// <inheritdoc cref="RunFastAsync(DbTransaction, Guid, Guid, string, RunOptions?, CancellationToken)"/>
    /// <summary>Creates a batch run inside the caller's transaction.</summary>
    /// <remarks>Nothing is submitted before the transaction commits; a rollback removes the run.</remarks>
    public Task<Guid> RunAsync(DbTransaction transaction, Guid sessionId, Guid agentId, string prompt, RunOptions? options = null, CancellationToken cancellationToken = default)
        => CreateRunAsync(TransactionGuard.Require(transaction, _dataSource, nameof(transaction)), sessionId, agentId, prompt, RunMode.Batch, options, cancellationToken);

    /// <inheritdoc cref="RunFastSyncAsync(Guid, Guid, string, RunOptions?, CancellationToken)"/>
    /// <summary>Creates a batch run and waits for its response.</summary>
    public async Task<Response> RunSyncAsync(Guid sessionId, Guid agentId, string prompt, RunOptions? options = null, CancellationToken cancellationToken = default)
    {
        var runId = await RunAsync(sessionId, agentId, prompt, options, cancellationToken).ConfigureAwait(false);
        return await WaitForRunAsync(runId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Creates a streaming run: Claude's streaming API answers within seconds.</summary>
    /// <param name="sessionId">The session; root runs of a session are processed one at a time.</param>
    /// <param name="agentId">The agent that answers.</param>
    /// <param name="prompt">The user's message.</param>
    /// <param name="options">Variables, instructions, tool callbacks, idempotency key and concurrency policy.</param>
    /// <param name="cancellationToken">Cancels creating the run.</param>
    /// <returns>The run id (the first run's id when <see cref="RunOptions.IdempotencyKey"/> was used before).</returns>
    /// <remarks>Any started instance that has the agent's tools picks the run up; this client does not need to be started.</remarks>
    /// <exception cref="ArgumentException">The prompt is empty or contains U+0000 (which PostgreSQL cannot store), or an option is invalid.</exception>
    /// <exception cref="AgentPgException">The session or agent does not exist (<see cref="AgentPgErrorCode.SessionNotFound"/>,
    /// <see cref="AgentPgErrorCode.AgentNotFound"/>), the session is busy under <see cref="ConcurrencyPolicy.Reject"/>
    /// (<see cref="AgentPgErrorCode.SessionBusy"/>), or the idempotency key belongs to a different request
    /// (<see cref="AgentPgErrorCode.IdempotencyConflict"/>).</exception>
    public Task<Guid> RunFastAsync(Guid sessionId, Guid agentId, string prompt, RunOptions? options = null, CancellationToken cancellationToken = default)
        => CreateRunAsync(null, sessionId, agentId, prompt, RunMode.Streaming, options, cancellationToken);

    /// <summary>Creates a streaming run inside the caller's transaction.</summary>
    /// <param name="transaction">An open transaction on an <see cref="NpgsqlConnection"/> to the client's database.</param>
    /// <param name="sessionId">The session.</param>
    /// <param name="agentId">The agent that answers.</param>
    /// <param name="prompt">The user's message.</param>
    /// <param name="options">Per-run options.</param>
    /// <param name="cancellationToken">Cancels creating the run.</param>
    /// <returns>The run id.</returns>
    /// <remarks>The run is invisible to workers until the transaction commits and disappears if it rolls back, so business
    /// data and agent work commit together. There is no synchronous variant: waiting inside the transaction would deadlock.</remarks>
    /// <exception cref="ArgumentException">The transaction is not an open Npgsql transaction on the client's database, or an
    /// argument is invalid.</exception>
    /// <exception cref="AgentPgException">See <see cref="RunFastAsync(Guid, Guid, string, RunOptions?, CancellationToken)"/>.</exception>
    public Task<Guid> RunFastAsync(DbTransaction transaction, Guid sessionId, Guid agentId, string prompt, RunOptions? options = null, CancellationToken cancellationToken = default)
        => CreateRunAsync(TransactionGuard.Require(transaction, _dataSource, nameof(transaction)), sessionId, agentId, prompt, RunMode.Streaming, options, cancellationToken);

    /// <summary>Creates a streaming run and waits for its response.</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="agentId">The agent that answers.</param>
    /// <param name="prompt">The user's message.</param>
    /// <param name="options">Per-run options.</param>
    /// <param name="cancellationToken">Stops waiting; the run itself goes on (cancel it with <see cref="CancelRunAsync"/>).</param>
    /// <returns>The response of the completed run.</returns>
    /// <remarks>Waits like <see cref="WaitForRunAsync"/>: as long as the run is not final, with a logged warning (event id
    /// 1301) when after a short grace period no live instance can claim it — for example because this client is a producer
    /// and no started client (worker) runs on the schema, or none registered the agent's tools.</remarks>
    /// <exception cref="AgentPgException">The run failed (<see cref="AgentPgErrorCode.RunFailed"/>) or was cancelled
    /// (<see cref="AgentPgErrorCode.RunCancelled"/>), or creating it failed.</exception>
    public async Task<Response> RunFastSyncAsync(Guid sessionId, Guid agentId, string prompt, RunOptions? options = null, CancellationToken cancellationToken = default)
    {
        var runId = await RunFastAsync(sessionId, agentId, prompt, options, cancellationToken).ConfigureAwait(false);
        return await WaitForRunAsync(runId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Waits until a run is final and returns its response.</summary>
    /// <param name="runId">The run.</param>
    /// <param name="cancellationToken">Stops waiting; the run itself goes on.</param>
    /// <returns>The response of the completed run.</returns>
    /// <remarks><para>Works on any client, started or not, for runs processed by any instance, any number of times, also after the
    /// run finished. It wakes on the run's NOTIFY; as a fallback for a lost notification, the client reads the states of every
    /// run its callers wait on in one statement every <see cref="AgentPgOptions.RunPollInterval"/> (not one read per caller).</para>
    /// <para>It waits as long as the run is not final, also when no instance can process it. When the run is still pending
    /// after five poll intervals (5 s by default) and no live instance can claim it — no client is started on the schema, or
    /// none registered every tool the agent lists — it logs a warning (event id 1301) that names the run, the agent and the
    /// missing tools, once per call. <see cref="GetRunDiagnosticsAsync"/> returns the same diagnosis.</para>
    /// <para>A lost connection to PostgreSQL (a restart, a failover) does not end the wait: its reads are retried for up to a
    /// minute, and a longer outage throws the <see cref="NpgsqlException"/>.</para></remarks>
    /// <exception cref="AgentPgException">The run does not exist (<see cref="AgentPgErrorCode.RunNotFound"/>), failed
    /// (<see cref="AgentPgErrorCode.RunFailed"/>, with the run's error) or was cancelled (<see cref="AgentPgErrorCode.RunCancelled"/>).</exception>
    /// <exception cref="ObjectDisposedException">The client is disposed, or was disposed while waiting.</exception>
    public async Task<Response> WaitForRunAsync(Guid runId, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _schemaCheck.EnsureAsync("WaitForRun", null, cancellationToken).ConfigureAwait(false);
        await EnsureListenerAsync(cancellationToken).ConfigureAwait(false);
        var waitStarted = _time.GetTimestamp();
        var diagnosed = false;
        while (true)
        {
            // Held from one read of the run until its signal (or the shared poll) says it may be final: nothing is left behind
            // whichever way this ends, and no notification is missed between the read and the wait.
            using var waiter = _engine.Waiters.Acquire(runId);
            // After the acquire: a disposal after this check signals the waiter (DisposeAsync sets the flag, then wakes everyone).
            ObjectDisposedException.ThrowIf(_disposed, this);
            // Reads retried through a lost connection (a PostgreSQL restart or failover): the run goes on meanwhile, and a
            // caller told it failed might start it again.
            var run = await Transient.RetryAsync(ct => FindRunAsync(runId, ct), _time, cancellationToken).ConfigureAwait(false)
                      ?? throw RunNotFound(runId, "WaitForRun");
            if (run.State.IsTerminal())
            {
                return await Transient.RetryAsync(ct => BuildResponseAsync(run, ct), _time, cancellationToken).ConfigureAwait(false);
            }

            var state = run.State;
            while (true)
            {
                // No silent infinite wait: a run still pending after the grace period gets one diagnosis per wait, logged as a
                // warning when no live instance can claim it (none started, or none has the agent's tools).
                if (!diagnosed && state == RunState.Pending && _time.GetElapsedTime(waitStarted) is var waited && waited >= UnclaimedGracePeriod)
                {
                    diagnosed = true;
                    await WarnIfUnclaimableAsync(runId, waited, cancellationToken).ConfigureAwait(false);
                }

                try
                {
                    await waiter.Task.WaitAsync(_options.RunPollInterval, _time, cancellationToken).ConfigureAwait(false);
                    break;
                }
                catch (TimeoutException)
                {
                    // Polling fallback (a notification can be lost while the LISTEN connection reconnects), shared by every
                    // wait of this client: one statement per interval reads all the runs waited on, and signals the final ones.
                    IReadOnlyDictionary<Guid, RunState?> states;
                    try
                    {
                        // A failed poll starts a new one: retried while the database is unreachable, within Transient's budget.
                        states = await Transient.RetryAsync(ct => _engine.Waiters.PollAsync(ct), _time, cancellationToken).ConfigureAwait(false);
                    }
                    catch (PostgresException ex) when (_schemaCheck.Invalidate(ex))
                    {
                        // The schema was dropped or rolled back while the run was waited on: say how to migrate, as a read of
                        // the run does (FindRunAsync), rather than PostgreSQL's "relation does not exist".
                        if (await _schemaCheck.TranslateAsync("WaitForRun", ex, cancellationToken).ConfigureAwait(false) is { } mismatch)
                        {
                            throw mismatch;
                        }

                        throw;
                    }

                    if (waiter.Task.IsCompleted)
                    {
                        break;
                    }

                    if (states.TryGetValue(runId, out var polled))
                    {
                        if (polled is not { } known || known.IsTerminal())
                        {
                            break;
                        }

                        state = known;
                    }
                }
            }
        }
    }

    /// <summary>Gets a run.</summary>
    /// <param name="id">The run.</param>
    /// <param name="cancellationToken">Cancels the query.</param>
    /// <returns>The run.</returns>
    /// <exception cref="AgentPgException">No run has that id (<see cref="AgentPgErrorCode.RunNotFound"/>).</exception>
    public async Task<Run> GetRunAsync(Guid id, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetRun", null, cancellationToken).ConfigureAwait(false);
        return await FindRunAsync(id, cancellationToken).ConfigureAwait(false) ?? throw RunNotFound(id, "GetRun");
    }

    /// <summary>Gets every message of a session in conversation order, child runs' messages included.</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="cancellationToken">Cancels the query.</param>
    /// <returns>The messages with their content blocks.</returns>
    /// <exception cref="AgentPgException">The session does not exist (<see cref="AgentPgErrorCode.SessionNotFound"/>).</exception>
    public async Task<IReadOnlyList<Message>> GetMessagesAsync(Guid sessionId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetMessages", null, cancellationToken).ConfigureAwait(false);
        var messages = await _sql.Messages.BySessionAsync(_dataSource, sessionId, cancellationToken).ConfigureAwait(false);
        if (messages.Count == 0)
        {
            // Distinguish an empty session from a missing one.
            await GetSessionAsync(sessionId, cancellationToken).ConfigureAwait(false);
        }

        return messages;
    }

    /// <summary>Gets the tool calls of a run, in the order Claude made them.</summary>
    /// <param name="runId">The run.</param>
    /// <param name="cancellationToken">Cancels the query.</param>
    /// <returns>The tool calls (empty when the run made none or does not exist).</returns>
    public async Task<IReadOnlyList<ToolCall>> GetRunToolCallsAsync(Guid runId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetRunToolCalls", null, cancellationToken).ConfigureAwait(false);
        return await _sql.ToolExecutions.CallsOfRunAsync(_dataSource, runId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Gets the tool calls one iteration asked for.</summary>
    /// <param name="iterationId">The iteration.</param>
    /// <param name="cancellationToken">Cancels the query.</param>
    /// <returns>The tool calls (empty when none).</returns>
    public async Task<IReadOnlyList<ToolCall>> GetIterationToolCallsAsync(Guid iterationId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetIterationToolCalls", null, cancellationToken).ConfigureAwait(false);
        return await _sql.ToolExecutions.CallsOfIterationAsync(_dataSource, iterationId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Gets the iterations (model calls) of a run, in order.</summary>
    /// <param name="runId">The run.</param>
    /// <param name="cancellationToken">Cancels the query.</param>
    /// <returns>The iterations (empty when none).</returns>
    public async Task<IReadOnlyList<Iteration>> GetIterationsAsync(Guid runId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetIterations", null, cancellationToken).ConfigureAwait(false);
        return await _sql.Iterations.ByRunAsync(_dataSource, runId, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Cancels a run and, recursively, the child runs it delegated to.</summary>
    /// <param name="runId">The run.</param>
    /// <param name="cancellationToken">Cancels the request (not the run).</param>
    /// <returns>A task that completes when the run is recorded as cancelled.</returns>
    /// <remarks>
    /// Idempotent: cancelling a run that is already final does nothing. In-flight streams and tools of the run are
    /// cancelled on whichever instance holds them; their late results are refused. Every tool call left without a result
    /// gets an error tool_result ("cancelled"), so the session stays valid for the next run.
    /// </remarks>
    /// <exception cref="AgentPgException">No run has that id (<see cref="AgentPgErrorCode.RunNotFound"/>).</exception>
    public async Task CancelRunAsync(Guid runId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("CancelRun", null, cancellationToken).ConfigureAwait(false);
        var result = await Transient.RetryAsync(ct => _sql.Runs.CancelAsync(_dataSource, runId, ct), _time, cancellationToken).ConfigureAwait(false);

        if (!result.Found)
        {
            throw RunNotFound(runId, "CancelRun");
        }

        if (result.Cancelled)
        {
            // Local work stops now; other instances learn it from agentpg_run_finalized.
            _engine.InFlight.Cancel(runId);
            _engine.Waiters.Signal(runId);
            Diagnostics.Telemetry.RunsCancelled(result.Mode, result.Runs);
            CancelBatchesInBackground(result.BatchIds);
        }
    }

    /// <summary>Runs a finished request again: deletes the run's messages and creates a new run with the same session, agent,
    /// prompt, mode, variables and instructions, in one transaction.</summary>
    /// <param name="runId">A completed, failed or cancelled run.</param>
    /// <param name="cancellationToken">Cancels the request (nothing is changed).</param>
    /// <returns>The new run's id.</returns>
    /// <remarks>The old run row, its iterations and tool executions are kept for the record; only its messages leave the
    /// conversation. Tool callbacks are not carried over. Only the session's latest root run can be regenerated: the new
    /// answer is appended at the end of the conversation, so regenerating an earlier run would reorder history, and a child
    /// run's task would enter the root conversation.</remarks>
    /// <exception cref="AgentPgException">The run does not exist (<see cref="AgentPgErrorCode.RunNotFound"/>), is not final
    /// (<see cref="AgentPgErrorCode.InvalidStateTransition"/>; cancel it first), is a child run, or is not the latest root
    /// run of its session (<see cref="AgentPgErrorCode.InvalidStateTransition"/>); or a compaction still in place summarised
    /// some of its messages (<see cref="AgentPgErrorCode.RunCompacted"/>: the summary holds the attempt regeneration would
    /// discard; restore the compaction with <see cref="RestoreCompactionAsync(Guid, CancellationToken)"/> first). A compaction
    /// that only pruned the run's tool outputs does not prevent it. Nothing is changed when it throws.</exception>
    public async Task<Guid> RegenerateRunAsync(Guid runId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("RegenerateRun", null, cancellationToken).ConfigureAwait(false);
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            await using (transaction.ConfigureAwait(false))
            {
                var (state, isChild, later, compactedBy) = await _sql.Runs.LockForRegenerateAsync(_dataSource, transaction, runId, cancellationToken).ConfigureAwait(false)
                    ?? throw RunNotFound(runId, "RegenerateRun");
                if (isChild)
                {
                    throw new AgentPgException(AgentPgErrorCode.InvalidStateTransition, "RegenerateRun",
                        $"Run {runId} is a child run (an agent delegation); only root runs can be regenerated. Regenerate its root run.")
                    {
                        RunId = runId,
                    };
                }

                if (later is { } newer)
                {
                    throw new AgentPgException(AgentPgErrorCode.InvalidStateTransition, "RegenerateRun",
                        $"Run {runId} is not the latest root run of its session (run {newer} came after it); regenerating it would " +
                        "remove turns from the middle of the conversation. Only the session's latest root run can be regenerated.")
                    {
                        RunId = runId,
                    };
                }

                var parsed = DbEnums.ParseRunState(state);
                if (!parsed.IsTerminal())
                {
                    throw new AgentPgException(AgentPgErrorCode.InvalidStateTransition, "RegenerateRun",
                        $"Run {runId} is {parsed}; only a completed, failed or cancelled run can be regenerated. Cancel it first.")
                    {
                        RunId = runId,
                    };
                }

                if (compactedBy is { } compaction)
                {
                    // The compaction's summary (and any later summary folding it) tells the attempt this would discard, and Claude
                    // would read it before answering again; restoring the compaction and then regenerating loses nothing.
                    throw new AgentPgException(AgentPgErrorCode.RunCompacted, "RegenerateRun",
                        $"Run {runId} cannot be regenerated: compaction {compaction} summarised some of its messages and is still in place, so " +
                        "its summary holds the attempt a regeneration would discard and Claude would read it again. Restore the session's " +
                        $"compactions back to {compaction} first (RestoreCompactionAsync, newest first; GetCompactionEventsAsync lists them), " +
                        "then regenerate; or start a new run. Nothing was changed.")
                    {
                        RunId = runId,
                    };
                }

                var newId = await _sql.Runs.RegenerateAsync(transaction, runId, InstanceId, cancellationToken).ConfigureAwait(false);
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                return newId;
            }
        }
    }

    private async Task<Guid> CreateRunAsync(NpgsqlTransaction? transaction, Guid sessionId, Guid agentId, string prompt, RunMode mode, RunOptions? options, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(prompt);
        if (string.IsNullOrWhiteSpace(prompt))
        {
            throw new ArgumentException("The prompt is empty; a run needs something to answer.", nameof(prompt));
        }

        // U+0000 cannot be stored; the caller can fix the prompt (see Internal/Nul.cs for the rule everywhere).
        Nul.Reject(prompt, nameof(prompt), "The prompt");

        if (options?.IdempotencyKey is { } key && (key.Length is 0 or > 255))
        {
            throw new ArgumentException("RunOptions.IdempotencyKey must be 1 to 255 characters long.", nameof(options));
        }

        Nul.Reject(options?.IdempotencyKey, nameof(options), "RunOptions.IdempotencyKey");
        Nul.Reject(options?.OverrideInstructions, nameof(options), "RunOptions.OverrideInstructions");
        Nul.Reject(options?.AppendInstructions, nameof(options), "RunOptions.AppendInstructions");
        var outputSchema = OutputSchemas.Validate(options?.OutputSchema, nameof(options), "RunOptions.OutputSchema");
        RunLimits.ValidateMaxIterations(options?.MaxIterations, nameof(options), "RunOptions.MaxIterations");
        RunLimits.ValidateTokenBudget(options?.TokenBudget, nameof(options), "RunOptions.TokenBudget");

        var policy = options?.ConcurrencyPolicy ?? ConcurrencyPolicy.Queue;
        if (!Enum.IsDefined(policy))
        {
            throw new ArgumentException($"RunOptions.ConcurrencyPolicy {policy} is not a defined value.", nameof(options));
        }

        var variables = JsonMapping.ToJsonObject(options?.Variables, "RunOptions.Variables");
        await _schemaCheck.EnsureAsync(mode == RunMode.Batch ? "Run" : "RunFast", transaction, cancellationToken).ConfigureAwait(false);
        var runOptions = new JsonObject();
        if (!string.IsNullOrEmpty(options?.OverrideInstructions))
        {
            runOptions[RunOptionKeys.OverrideInstructions] = options.OverrideInstructions;
        }

        if (!string.IsNullOrEmpty(options?.AppendInstructions))
        {
            runOptions[RunOptionKeys.AppendInstructions] = options.AppendInstructions;
        }

        if (outputSchema is not null)
        {
            runOptions[RunOptionKeys.OutputSchema] = outputSchema;
        }

        if (options?.MaxIterations is { } maxIterations)
        {
            runOptions[RunOptionKeys.MaxIterations] = maxIterations;
        }

        if (options?.TokenBudget is { } tokenBudget)
        {
            runOptions[RunOptionKeys.TokenBudget] = tokenBudget;
        }

        var newRun = new NewRun(sessionId, agentId, prompt, mode, InstanceId, variables, runOptions.ToJsonString(), options?.IdempotencyKey,
            Diagnostics.Telemetry.CurrentTraceParent());
        // The callbacks' entry must go if the caller rolls back: the sweep asks whether the creating transaction committed.
        var readTransaction = transaction is not null && (options?.OnToolStart is not null || options?.OnToolComplete is not null);
        CreatedRun created;
        try
        {
            // Serializes the creators of one session: a Queue insert cannot slip past a Reject check, and an idempotent
            // repeat is recognised before Interrupt cancels anything.
            created = await _sql.Runs.CreateAsync(_dataSource, transaction, _options.PrepareStatements, newRun, policy, readTransaction, cancellationToken)
                .ConfigureAwait(false);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.ForeignKeyViolation)
        {
            throw ex.ConstraintName == "agentpg_runs_agent_id_fkey"
                ? new AgentPgException(AgentPgErrorCode.AgentNotFound, "CreateRun", $"No agent has id {agentId}.", ex) { SessionId = sessionId }
                : SessionNotFound(sessionId, "CreateRun");
        }

        if (!created.SessionFound)
        {
            throw SessionNotFound(sessionId, "CreateRun");
        }

        var id = created.Id;
        if (id is null)
        {
            // The idempotency key is taken, or (Reject) the session is busy.
            if (options?.IdempotencyKey is not null
                && await FindIdempotentRunAsync(transaction, newRun, cancellationToken).ConfigureAwait(false) is { } existing)
            {
                return existing;
            }

            throw new AgentPgException(AgentPgErrorCode.SessionBusy, "CreateRun",
                $"Session {sessionId} already has an active run and the run was created with ConcurrencyPolicy.Reject. " +
                "Wait for it (WaitForRunAsync), cancel it, or use ConcurrencyPolicy.Queue or Interrupt.")
            {
                SessionId = sessionId,
            };
        }

        _engine.Callbacks.Register(id.Value, options, created.CreatingTransaction);
        if (transaction is null)
        {
            // Committed now. (In the caller's transaction, the runs' finalized notifications stop their work at commit.)
            foreach (var cancelled in created.Interrupted)
            {
                _engine.InFlight.Cancel(cancelled);
            }

            foreach (var (cancelledMode, count) in created.CancelledRuns)
            {
                Diagnostics.Telemetry.RunsCancelled(cancelledMode, count);
            }

            CancelBatchesInBackground(created.BatchIdsToCancel);
            if (_started)
            {
                // The NOTIFY reaches every instance; waking the local worker directly saves its delivery (and the
                // delivery to this client then wakes nothing).
                _router.WakeForCreatedRun(id.Value, mode);
            }

            _engine.Notifier.RunCreated(id.Value, mode, sessionId, null);
        }

        return id.Value;
    }

    /// <summary>The run that already holds the repeat's idempotency key; throws <see cref="AgentPgErrorCode.IdempotencyConflict"/>
    /// when the repeat is a different request (agent, prompt, mode, variables or instructions), as a payment API answers a key
    /// reused with other parameters: returning the first run would silently drop what the caller changed.</summary>
    private async Task<Guid?> FindIdempotentRunAsync(NpgsqlTransaction? transaction, NewRun repeat, CancellationToken cancellationToken)
    {
        if (await _sql.Runs.GetByIdempotencyKeyAsync(_dataSource, transaction, repeat, cancellationToken).ConfigureAwait(false) is not { } existing)
        {
            return null;
        }

        List<string> differences = [];
        if (existing.AgentId != repeat.AgentId)
        {
            differences.Add("agent");
        }

        if (existing.Prompt != repeat.Prompt)
        {
            differences.Add("prompt");
        }

        if (existing.Mode != repeat.Mode)
        {
            differences.Add($"mode ({(existing.Mode == RunMode.Batch ? "RunAsync" : "RunFastAsync")} first)");
        }

        if (!existing.SameVariables)
        {
            differences.Add("RunOptions.Variables");
        }

        if (!existing.SameOptions)
        {
            differences.Add("RunOptions.OverrideInstructions, AppendInstructions, OutputSchema, MaxIterations or TokenBudget");
        }

        if (differences.Count > 0)
        {
            throw new AgentPgException(AgentPgErrorCode.IdempotencyConflict, "CreateRun",
                $"Idempotency key '{repeat.IdempotencyKey}' was already used in session {repeat.SessionId} for run {existing.Id} with a different " +
                $"{string.Join(", ", differences)}. Use a new key for a new request.")
            {
                SessionId = repeat.SessionId,
                RunId = existing.Id,
            };
        }

        return existing.Id;
    }

    private async Task<Run?> FindRunAsync(Guid id, CancellationToken cancellationToken)
    {
        try
        {
            return await _sql.Runs.GetAsync(_dataSource, id, cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException ex) when (_schemaCheck.Invalidate(ex))
        {
            // The schema was checked, then dropped or rolled back underneath a long wait: say how to migrate.
            if (await _schemaCheck.TranslateAsync("GetRun", ex, cancellationToken).ConfigureAwait(false) is { } mismatch)
            {
                throw mismatch;
            }

            throw;
        }
    }

    private async Task<Response> BuildResponseAsync(Run run, CancellationToken cancellationToken)
    {
        if (run.State == RunState.Failed)
        {
            throw new AgentPgException(AgentPgErrorCode.RunFailed, "run", $"Run {run.Id} failed: {run.ErrorMessage}")
            {
                RunId = run.Id,
                SessionId = run.SessionId,
                Context = new Dictionary<string, object?> { ["error_type"] = run.ErrorType, ["error_message"] = run.ErrorMessage },
            };
        }

        if (run.State == RunState.Cancelled)
        {
            throw new AgentPgException(AgentPgErrorCode.RunCancelled, "run", $"Run {run.Id} was cancelled.")
            {
                RunId = run.Id,
                SessionId = run.SessionId,
            };
        }

        var (message, toolCalls, total) = await _sql.FinalAnswerAsync(_dataSource, run, cancellationToken).ConfigureAwait(false);
        return new Response
        {
            RunId = run.Id,
            Text = run.ResponseText ?? "",
            StopReason = run.StopReason ?? "",
            Usage = run.Usage,
            TotalUsage = total,
            Message = message,
            IterationCount = run.IterationCount,
            ToolIterations = run.ToolIterations,
            ToolCalls = toolCalls,
        };
    }

    private static AgentPgException RunNotFound(Guid id, string operation)
        => new(AgentPgErrorCode.RunNotFound, operation, $"Run {id} does not exist.") { RunId = id };
}
