using AgentPg.Internal;
using AgentPg.Runs;
using AgentPg.Workers;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_runs.</summary>
internal sealed class RunSql
{
    public const string Columns =
        "id, session_id, agent_id, run_mode::text, parent_run_id, parent_tool_execution_id, depth, state::text, previous_state::text, " +
        "prompt, idempotency_key, current_iteration, current_iteration_id, response_text, stop_reason, input_tokens, output_tokens, " +
        "cache_creation_input_tokens, cache_read_input_tokens, iteration_count, tool_iterations, continuation_count, error_message, " +
        "error_type, created_by_instance_id, claimed_by_instance_id, claimed_at, claim_epoch, metadata::text, options::text, " +
        "created_at, started_at, finalized_at, rescue_attempts, last_rescue_at";

    private const string Terminal = "('completed', 'cancelled', 'failed')";

    public RunSql(SchemaName s)
    {
        var t = $"{s}.agentpg_runs";
        // The active runs (agentpg_run_queue, kept in step by triggers): agentpg_runs has no index on state.
        var queue = $"{s}.agentpg_run_queue";
        // $1 session, $2 agent, $3 prompt, $4 mode, $5 created_by, $6 metadata (variables), $7 options, $8 idempotency key,
        // $9 the creator's W3C trace context.
        // No row back when the idempotency key is already used in the session.
        Insert = $"""
            INSERT INTO {t} (session_id, agent_id, prompt, run_mode, created_by_instance_id, metadata, options, idempotency_key, traceparent)
            VALUES ($1, $2, $3, $4::{s}.agentpg_run_mode, $5, $6, $7, $8, $9)
            ON CONFLICT (session_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING id
            """;
        // The same for a run without an idempotency key: nothing can conflict, so a plain insert (no speculative insertion).
        // A root run is its own root: naming it here spares the row agentpg_run_before_insert (a PL/pgSQL call).
        InsertWithoutKey = $"""
            INSERT INTO {t} (id, root_run_id, session_id, agent_id, prompt, run_mode, created_by_instance_id, metadata, options, idempotency_key,
                             traceparent)
            SELECT g.id, g.id, $1, $2, $3, $4::{s}.agentpg_run_mode, $5, $6, $7, $8, $9 FROM (SELECT gen_random_uuid() AS id) g
            RETURNING id
            """;
        // The caller's transaction that created a run (for the callback sweep), as text.
        CurrentTransaction = "SELECT pg_current_xact_id()::text";
        // ConcurrencyPolicy.Reject: same parameters; no row back when the session has an active root run.
        // Every creator locks the session row first (LockSession), so no insert can slip past a rejecting one.
        InsertIfSessionIdle = $"""
            INSERT INTO {t} (session_id, agent_id, prompt, run_mode, created_by_instance_id, metadata, options, idempotency_key, traceparent)
            SELECT $1, $2, $3, $4::{s}.agentpg_run_mode, $5, $6, $7, $8, $9
             WHERE NOT EXISTS (SELECT 1 FROM {queue} WHERE session_id = $1 AND is_root)
            ON CONFLICT (session_id, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
            RETURNING id
            """;
        // Serializes the run creators of one session (all policies): Reject's check and Interrupt's cancel see every
        // other creator's run, and an idempotency key is looked up before anything is interrupted.
        LockSession = $"SELECT id FROM {s}.agentpg_sessions WHERE id = $1 FOR NO KEY UPDATE";
        // ConcurrencyPolicy.Interrupt: cancel the session's active root runs (and their children), returning the batch
        // ids to cancel at the API. $2 idempotency key: when a run of the session already has it, the request is a repeat
        // and interrupts nothing (the session row is locked first, so the key's run, if any, is committed and visible).
        CancelActiveRootRuns = $"""
            SELECT r.run_id, c.cancelled, c.batch_ids, r.run_mode::text, cardinality(c.child_run_ids)
              FROM {queue} r, LATERAL {s}.agentpg_cancel_run(r.run_id) c
             WHERE r.session_id = $1 AND r.is_root
               AND ($2::text IS NULL OR NOT EXISTS (SELECT 1 FROM {t} k WHERE k.session_id = $1 AND k.idempotency_key = $2))
            """;
        // Runs with tool callbacks in memory: $1 run ids, $2 the creating transaction (xid8 as text; null when committed).
        // Returns each run's state (null: not visible) and the creating transaction's status.
        CallbackSweep = $"""
            SELECT e.id, r.state::text, pg_xact_status(e.xact)
              FROM unnest($1::uuid[], $2::text[]::xid8[]) AS e(id, xact)
              LEFT JOIN {t} r ON r.id = e.id
            """;
        // The waited runs' states in one statement (WaitForRunAsync's fallback poll): $1 run ids; null for a run that does not exist.
        States = $"""
            SELECT w.id, r.state::text
              FROM unnest($1::uuid[]) AS w(id)
              LEFT JOIN {t} r ON r.id = w.id
            """;
        // $1 session, $2 key, $3 the repeat's variables, $4 its options: the first run and whether the repeat asks for the same.
        GetByIdempotencyKey = $"""
            SELECT id, agent_id, prompt, run_mode::text, metadata = $3::jsonb, options = $4::jsonb
              FROM {t} WHERE session_id = $1 AND idempotency_key = $2
            """;
        Get = $"SELECT {Columns} FROM {t} WHERE id = $1";
        // The tokens run $1's tree has used (input + output + cache write + cache read, as each run's usage records them): its
        // root and every child run of the root, found by agentpg_idx_runs_root. Only for a run with a token budget.
        RootTreeTokens = $"""
            SELECT coalesce(sum(r.input_tokens::bigint + r.output_tokens + r.cache_creation_input_tokens + r.cache_read_input_tokens), 0)::bigint
              FROM (SELECT coalesce(root_run_id, id) AS id FROM {t} WHERE id = $1) root
              JOIN {t} r ON r.id = root.id OR (r.root_run_id = root.id AND r.parent_run_id IS NOT NULL)
            """;
        // agentpg.runs.pending: a count on the queue's claim index.
        CountPending = $"SELECT count(*) FROM {queue} WHERE state = 'pending'";
        // The claimed runs, each with its next iteration started (current_iteration), and the outcome of the iteration before
        // it, which decides what the new one is (its max_tokens).
        Claim = $"""
            SELECT {Prefixed("r")}, pi.trigger_type, pi.stop_reason, pi.error_type, pi.max_tokens, pi.extended_context, r.traceparent
              FROM {s}.agentpg_claim_runs($1, $2, $3::{s}.agentpg_run_mode) r
              LEFT JOIN {s}.agentpg_iterations pi ON pi.run_id = r.id AND pi.iteration_number = r.current_iteration - 1
            """;
        // $1 run, $2 instance, $3 epoch, $4 current iteration (null: not checked). Same check, lock and live-event skip as
        // agentpg_fence_run, in plain SQL: SQLSTATE AP001 (agentpg_claim_lost) only when the run row did not match (no row
        // otherwise). A root run locked with its watch marker unset is remembered as unwatched for the transaction
        // (agentpg_run_event_skip, inlined; evaluated on the locked row, above the lock).
        Fence = $"""
            SELECT {s}.agentpg_claim_lost($1, $2, $3), fence.skipped
              FROM (SELECT count(*) AS held,
                           bool_or({s}.agentpg_run_event_skip(locked.id)) FILTER (WHERE locked.parent_run_id IS NULL AND NOT locked.watched) AS skipped
                      FROM (SELECT id, parent_run_id, watched FROM {t}
                             WHERE id = $1 AND claimed_by_instance_id = $2 AND claim_epoch = $3 AND state NOT IN {Terminal}
                               AND ($4::uuid IS NULL OR current_iteration_id = $4)
                               FOR NO KEY UPDATE) locked) fence
             WHERE fence.held = 0
            """;
        // $1 run, $2 instance, $3 epoch. The run is still claimed by this instance under this epoch and not final, read without
        // a lock: no row lock, so no transaction id, no WAL and no commit to flush. When it is not, SQLSTATE AP001 as from the
        // fence (the run as this statement's snapshot found it, or later still: an epoch only grows and a final state stays).
        // Before the next request to Claude after a wait: a run rescued or cancelled meanwhile makes no paid call.
        StillClaimed = $"""
            SELECT {s}.agentpg_claim_lost($1, $2, $3)
             WHERE NOT EXISTS (SELECT 1 FROM {t}
                                WHERE id = $1 AND claimed_by_instance_id = $2 AND claim_epoch = $3 AND state NOT IN {Terminal})
            """;
        // Lock order (parent run before child run): a child run's final write locks its parent first, since the child's
        // completion trigger completes the parent's tool execution and locks the parent. $1 parent run.
        LockParent = $"SELECT 1 FROM {t} WHERE id = $1 FOR NO KEY UPDATE";
        // Progress of a live stream; not fenced by exception: a lost claim simply matches no row.
        Progress = $"UPDATE {t} SET last_progress_at = now() WHERE id = $1 AND claim_epoch = $2 AND claimed_by_instance_id = $3";
        // $1 run, $2 iteration number, $3 iteration id. After the fence.
        StartIteration = $"UPDATE {t} SET current_iteration = $2, current_iteration_id = $3, last_progress_at = now() WHERE id = $1";
        // $1 run, $2 response text, $3 stop reason, $4..$7 tokens. After the fence. Returns the mode of the session's next
        // active root run, for the deferred agentpg_run_finalized notification: agentpg_next_root_run_mode's query, written
        // out (a PL/pgSQL call per run less; RunTransitionTests). Like the function, the RETURNING reads the statement's
        // snapshot, in which the run's own queue row (deleted by its trigger after the statement) is excluded by id. The
        // function plans with enable_seqscan off; the batch that sends this sets it too (NotifySql.DeferOnIndexPlans), so a
        // plan made while the queue was small does not scan it whole once it has grown.
        Complete = $"""
            UPDATE {t} r
               SET state = 'completed', previous_state = state, finalized_at = coalesce(finalized_at, now()), response_text = $2, stop_reason = $3,
                   input_tokens = input_tokens + $4, output_tokens = output_tokens + $5,
                   cache_creation_input_tokens = cache_creation_input_tokens + $6, cache_read_input_tokens = cache_read_input_tokens + $7,
                   iteration_count = iteration_count + 1, claimed_by_instance_id = NULL, claimed_at = NULL
             WHERE id = $1
            RETURNING CASE WHEN r.parent_run_id IS NULL THEN
                          (SELECT o.run_mode::text FROM {queue} o
                            WHERE o.session_id = r.session_id AND o.is_root AND o.run_id <> r.id
                            ORDER BY o.seq LIMIT 1)
                      END AS next_run_mode
            """;
        // An iteration that continues in place (pause_turn, truncated tool call, context retry): count it, keep the claim.
        // $1 run, $2..$5 tokens, $6 continuation increment. After the fence.
        Continue = $"""
            UPDATE {t}
               SET input_tokens = input_tokens + $2, output_tokens = output_tokens + $3,
                   cache_creation_input_tokens = cache_creation_input_tokens + $4, cache_read_input_tokens = cache_read_input_tokens + $5,
                   iteration_count = iteration_count + 1, continuation_count = continuation_count + $6, last_progress_at = now()
             WHERE id = $1
            """;
        // $1 run, $2 state. After the fence.
        SetState = $"UPDATE {t} SET state = $2::{s}.agentpg_run_state, last_progress_at = now() WHERE id = $1";
        // A batch run whose holder is gone (released by a rescue or a shutdown): the first poller to get here takes it.
        // $1 run, $2 instance. Returns the new claim epoch.
        AdoptBatchRun = $"""
            UPDATE {t}
               SET claimed_by_instance_id = $2, claimed_at = now(), claim_epoch = claim_epoch + 1, last_progress_at = now()
             WHERE id = $1 AND claimed_by_instance_id IS NULL AND state IN ('batch_pending', 'batch_processing')
            RETURNING claim_epoch
            """;
        // Iterations to poll: this instance's in-progress batches and orphaned ones. $1 instance, $2 interval, $3 max.
        ForPoll = $"""
            SELECT {PollColumns}, {Prefixed("r")}, r.traceparent
              FROM {s}.agentpg_get_iterations_for_poll($1, $2, $3) i
              JOIN {t} r ON r.id = i.run_id
            """;
        // A batch run's continuation: count the iteration and queue the run again (the next iteration is another batch).
        ContinueLater = $"""
            UPDATE {t}
               SET input_tokens = input_tokens + $2, output_tokens = output_tokens + $3,
                   cache_creation_input_tokens = cache_creation_input_tokens + $4, cache_read_input_tokens = cache_read_input_tokens + $5,
                   iteration_count = iteration_count + 1, continuation_count = continuation_count + $6,
                   state = 'pending', previous_state = state, claimed_by_instance_id = NULL, claimed_at = NULL
             WHERE id = $1
            """;
        // $1 run, $2 error type, $3 error message, $4..$7 tokens of the failed iteration. After the fence.
        Fail = $"""
            UPDATE {t}
               SET state = 'failed', previous_state = state, finalized_at = coalesce(finalized_at, now()), error_type = $2, error_message = $3,
                   input_tokens = input_tokens + $4, output_tokens = output_tokens + $5,
                   cache_creation_input_tokens = cache_creation_input_tokens + $6, cache_read_input_tokens = cache_read_input_tokens + $7,
                   claimed_by_instance_id = NULL, claimed_at = NULL
             WHERE id = $1
            """;
        // $1 tool params (JSON array), $2 run, $3 run updates (JSON), $4 instance, $5 epoch.
        CreateToolExecutions = $"SELECT count(*)::int FROM {s}.agentpg_create_tool_executions_and_update_run($1, $2, 'pending_tools', $3, $4, $5)";
        // Usage of the run and of every run below it.
        TreeUsage = $"""
            WITH RECURSIVE tree AS (
                SELECT id, input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens FROM {t} WHERE id = $1
                UNION ALL
                SELECT r.id, r.input_tokens, r.output_tokens, r.cache_creation_input_tokens, r.cache_read_input_tokens
                  FROM {t} r JOIN tree ON r.parent_run_id = tree.id
            )
            SELECT coalesce(sum(input_tokens), 0)::bigint, coalesce(sum(output_tokens), 0)::bigint,
                   coalesce(sum(cache_creation_input_tokens), 0)::bigint, coalesce(sum(cache_read_input_tokens), 0)::bigint
              FROM tree
            """;
        // With the run's mode (its child runs share it) and how many child runs were cancelled with it, for agentpg.runs.
        Cancel = $"""
            SELECT c.found, c.cancelled, c.batch_ids, (SELECT r.run_mode::text FROM {t} r WHERE r.id = $1), cardinality(c.child_run_ids)
              FROM {s}.agentpg_cancel_run($1) c
            """;
        // Regeneration locks the run's session first, as run creators and compaction do (lock order: session, then run):
        // no run is created after the latest-run check, and no compaction or restore of the session commits meanwhile.
        LockSessionOfRun = $"""
            SELECT 1 FROM {s}.agentpg_sessions WHERE id = (SELECT session_id FROM {t} WHERE id = $1) FOR NO KEY UPDATE
            """;
        // The run's state, whether it is a child run, the newest root run of its session (regeneration rewrites the end of
        // the conversation only), and the oldest compaction still in place that summarised one of the run's messages (its
        // archive rows go when it is restored): the summary holds the attempt regeneration would discard.
        LockForRegenerate = $"""
            SELECT r.state::text, r.parent_run_id IS NOT NULL,
                   (SELECT o.id FROM {t} o WHERE o.session_id = r.session_id AND o.parent_run_id IS NULL AND o.seq > r.seq
                     ORDER BY o.seq DESC LIMIT 1),
                   (SELECT e.id FROM {s}.agentpg_message_archive a JOIN {s}.agentpg_compaction_events e ON e.id = a.compaction_event_id
                     WHERE a.session_id = r.session_id AND a.original_message->>'action' = 'removed'
                       AND a.original_message->'message'->>'run_id' = r.id::text
                     ORDER BY e.created_at, e.id LIMIT 1)
              FROM {t} r WHERE r.id = $1 FOR NO KEY UPDATE OF r
            """;
        DeleteMessages = $"SELECT {s}.agentpg_delete_run_messages($1)";
        // The same request again: session, agent, prompt, mode, variables and instructions; created by $2. Parent links
        // are not copied (reference behaviour): a regenerated run is a root run.
        Regenerate = $"""
            INSERT INTO {t} (session_id, agent_id, prompt, run_mode, created_by_instance_id, metadata, options)
            SELECT session_id, agent_id, prompt, run_mode, $2, metadata, options FROM {t} WHERE id = $1
            RETURNING id
            """;
        ContinueStuckPendingTools = $"""
            SELECT count(*)::int FROM (
                SELECT {s}.agentpg_complete_tools_and_continue_run(r.id) AS message_id
                  FROM {queue} q JOIN {t} r ON r.id = q.run_id
                 WHERE q.state = 'pending_tools' AND r.state = 'pending_tools' AND r.current_iteration_id IS NOT NULL
                   AND NOT EXISTS (SELECT 1 FROM {s}.agentpg_tool_executions te
                                    WHERE te.iteration_id = r.current_iteration_id AND te.state IN ('pending', 'running', 'awaiting_approval'))
                 LIMIT 100
            ) continued WHERE message_id IS NOT NULL
            """;
    }

    public string Insert { get; }

    public string InsertWithoutKey { get; }

    public string InsertIfSessionIdle { get; }

    public string CountPending { get; }
    public string CurrentTransaction { get; }

    public string LockSession { get; }

    public string CancelActiveRootRuns { get; }

    public string CallbackSweep { get; }

    public string States { get; }

    public string GetByIdempotencyKey { get; }

    public string Get { get; }

    public string RootTreeTokens { get; }

    public string Claim { get; }

    public string Fence { get; }

    public string StillClaimed { get; }

    public string LockParent { get; }

    public string Progress { get; }

    public string StartIteration { get; }

    public string Complete { get; }

    public string Continue { get; }

    public string ContinueLater { get; }

    public string SetState { get; }

    public string AdoptBatchRun { get; }

    public string ForPoll { get; }

    public string Fail { get; }

    public string CreateToolExecutions { get; }

    public string TreeUsage { get; }

    public string ContinueStuckPendingTools { get; }

    public string Cancel { get; }

    public string LockSessionOfRun { get; }

    public string LockForRegenerate { get; }

    public string DeleteMessages { get; }

    public string Regenerate { get; }

    // Client (AgentPgClient.Runs): creating, cancelling, regenerating and reading runs.

    // Positions in CancelActiveRootRuns' and Cancel's SELECT lists, in LockForRegenerate's, in GetByIdempotencyKey's.
    private const int InterruptedIdColumn = 0, InterruptedCancelledColumn = 1, InterruptedBatchIdsColumn = 2, InterruptedModeColumn = 3,
        InterruptedChildrenColumn = 4;
    private const int CancelFoundColumn = 0, CancelCancelledColumn = 1, CancelBatchIdsColumn = 2, CancelModeColumn = 3, CancelChildrenColumn = 4;
    private const int RegenerateStateColumn = 0, RegenerateIsChildColumn = 1, RegenerateLaterColumn = 2, RegenerateCompactedColumn = 3;
    private const int KeyIdColumn = 0, KeyAgentIdColumn = 1, KeyPromptColumn = 2, KeyModeColumn = 3, KeySameVariablesColumn = 4, KeySameOptionsColumn = 5;
    private const int TreeInputColumn = 0, TreeOutputColumn = 1, TreeCacheCreationColumn = 2, TreeCacheReadColumn = 3;

    // The one column of the inserts' RETURNING, of Regenerate's and of CurrentTransaction.
    private const int ReturnedColumn = 0;

    /// <summary>Creates a run in one batch: the session lock (no row: no session), Interrupt's cancellations, the insert for the
    /// policy (no row: the idempotency key is taken or, for Reject, the session is busy) and, when asked, the creating
    /// transaction. Without <paramref name="transaction"/> the batch runs in its own transaction, prepared when
    /// <paramref name="prepare"/> is set, and defers its NOTIFY (the caller sends it after the commit).</summary>
    public async Task<CreatedRun> CreateAsync(NpgsqlDataSource dataSource, NpgsqlTransaction? transaction, bool prepare, NewRun run,
        ConcurrencyPolicy policy, bool readTransaction, CancellationToken cancellationToken)
    {
        var batch = transaction is null ? new NpgsqlBatch() : new NpgsqlBatch(transaction.Connection, transaction);
        await using (batch.ConfigureAwait(false))
        {
            if (transaction is null)
            {
                NotifySql.AddDefer(batch, Notifications.Channels.RunCreated);
            }

            batch.Append(LockSession, P.Uuid(run.SessionId));
            if (policy == ConcurrencyPolicy.Interrupt)
            {
                batch.Append(CancelActiveRootRuns, P.Uuid(run.SessionId), P.Text(run.IdempotencyKey));
            }

            batch.Append(policy == ConcurrencyPolicy.Reject ? InsertIfSessionIdle : run.IdempotencyKey is null ? InsertWithoutKey : Insert,
                P.Uuid(run.SessionId), P.Uuid(run.AgentId), P.Text(run.Prompt), P.Text(run.Mode.ToDb()), P.Text(run.InstanceId), P.Jsonb(run.VariablesJson),
                P.Jsonb(run.OptionsJson), P.Text(run.IdempotencyKey), P.Text(run.TraceParent));
            if (readTransaction)
            {
                batch.Append(CurrentTransaction);
            }

            // A caller's transaction is left as it is; on our own connection the statements are prepared.
            var reader = transaction is null
                ? await batch.ExecuteReaderAsync(dataSource, prepare, cancellationToken).ConfigureAwait(false)
                : await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                if (transaction is null)
                {
                    await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                }

                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    return new CreatedRun { SessionFound = false };
                }

                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                var interrupted = new List<Guid>();
                var cancelledRuns = new List<(string Mode, int Count)>();
                var batchIds = new List<string>();
                if (policy == ConcurrencyPolicy.Interrupt)
                {
                    while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                    {
                        interrupted.Add(reader.GetGuid(InterruptedIdColumn));
                        batchIds.AddRange(reader.GetFieldValue<string[]>(InterruptedBatchIdsColumn));
                        if (reader.GetBoolean(InterruptedCancelledColumn))
                        {
                            cancelledRuns.Add((reader.GetString(InterruptedModeColumn), 1 + reader.GetInt32(InterruptedChildrenColumn)));
                        }
                    }

                    await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                }

                Guid? id = await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? reader.GetGuid(ReturnedColumn) : null;
                string? creatingTransaction = null;
                if (readTransaction && await reader.NextResultAsync(cancellationToken).ConfigureAwait(false)
                    && await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    creatingTransaction = reader.GetString(ReturnedColumn);
                }

                return new CreatedRun
                {
                    SessionFound = true, Id = id, Interrupted = interrupted, CancelledRuns = cancelledRuns, BatchIdsToCancel = [.. batchIds],
                    CreatingTransaction = creatingTransaction,
                };
            }
        }
    }

    /// <summary>The run that holds the idempotency key of <paramref name="repeat"/> in its session (with whether <paramref name="repeat"/> asks for
    /// the same variables and options), or null.</summary>
    public Task<IdempotentRun?> GetByIdempotencyKeyAsync(NpgsqlDataSource dataSource, NpgsqlTransaction? transaction, NewRun repeat,
        CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, GetByIdempotencyKey, P.Uuid(repeat.SessionId), P.Text(repeat.IdempotencyKey), P.Jsonb(repeat.VariablesJson),
                P.Jsonb(repeat.OptionsJson))
            .QueryFirstOrDefaultAsync(
                r => new IdempotentRun(r.GetGuid(KeyIdColumn), r.GetGuid(KeyAgentIdColumn), r.GetString(KeyPromptColumn),
                    DbEnums.ParseRunMode(r.GetString(KeyModeColumn)), r.GetBoolean(KeySameVariablesColumn), r.GetBoolean(KeySameOptionsColumn)),
                cancellationToken);

    /// <summary>The tokens the whole tree of run <paramref name="runId"/> (from its root down) has used (<see cref="RootTreeTokens"/>).</summary>
    public async Task<long> RootTreeTokensAsync(NpgsqlDataSource dataSource, Guid runId, CancellationToken cancellationToken)
        => (await Db.Command(dataSource, null, RootTreeTokens, P.Uuid(runId)).QueryFirstAsync(r => r.GetInt64(0), cancellationToken).ConfigureAwait(false)).Row;

    public Task<Run?> GetAsync(NpgsqlDataSource dataSource, Guid id, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, Get, P.Uuid(id)).QueryFirstOrDefaultAsync(Read, cancellationToken);

    /// <summary>Cancels a run and its children (agentpg_cancel_run): whether it exists, whether this call cancelled it, and the
    /// Message Batches to cancel at the API.</summary>
    /// <summary>Runs <see cref="Cancel"/>: whether the run exists and was cancelled now, the batches to cancel at the API, the run's
    /// mode (null when it does not exist) and how many runs were cancelled (the run and its descendants).</summary>
    public async Task<(bool Found, bool Cancelled, string[] BatchIds, string? Mode, int Runs)> CancelAsync(NpgsqlDataSource dataSource, Guid runId,
        CancellationToken cancellationToken)
        => (await Db.Command(dataSource, null, Cancel, P.Uuid(runId)).QueryFirstAsync(
            r => (r.GetBoolean(CancelFoundColumn), r.GetBoolean(CancelCancelledColumn), r.GetFieldValue<string[]>(CancelBatchIdsColumn),
                r.IsDBNull(CancelModeColumn) ? null : r.GetString(CancelModeColumn), 1 + r.GetInt32(CancelChildrenColumn)),
            cancellationToken).ConfigureAwait(false)).Row;

    /// <summary>Locks the run's session, then the run, for regeneration (<see cref="LockSessionOfRun"/>,
    /// <see cref="LockForRegenerate"/>); null when the run does not exist.</summary>
    public async Task<RegenerateTarget?> LockForRegenerateAsync(NpgsqlDataSource dataSource, NpgsqlTransaction transaction, Guid runId,
        CancellationToken cancellationToken)
    {
        await Db.Command(dataSource, transaction, LockSessionOfRun, P.Uuid(runId)).ScalarAsync(cancellationToken).ConfigureAwait(false);
        return await Db.Command(dataSource, transaction, LockForRegenerate, P.Uuid(runId)).QueryFirstOrDefaultAsync(
            r => new RegenerateTarget(r.GetString(RegenerateStateColumn), r.GetBoolean(RegenerateIsChildColumn),
                r.IsDBNull(RegenerateLaterColumn) ? null : r.GetGuid(RegenerateLaterColumn),
                r.IsDBNull(RegenerateCompactedColumn) ? null : r.GetGuid(RegenerateCompactedColumn)),
            cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes the run's messages and inserts the same request again, created by <paramref name="instanceId"/>; returns the
    /// new run's id.</summary>
    public async Task<Guid> RegenerateAsync(NpgsqlTransaction transaction, Guid runId, string instanceId, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch(transaction.Connection, transaction);
        await using (batch.ConfigureAwait(false))
        {
            batch.Append(DeleteMessages, P.Uuid(runId));
            batch.Append(Regenerate, P.Uuid(runId), P.Text(instanceId));
            var reader = await batch.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                return reader.GetGuid(ReturnedColumn);
            }
        }
    }

    /// <summary>How many runs are pending (<see cref="CountPending"/>).</summary>
    public async Task<long> CountPendingAsync(NpgsqlDataSource dataSource, CancellationToken cancellationToken)
        => await Db.Command(dataSource, null, CountPending).ScalarAsync(cancellationToken).ConfigureAwait(false) as long? ?? 0;

    /// <summary>Adds <see cref="TreeUsage"/> (one row for <see cref="ReadTreeUsage"/>).</summary>
    public void AddTreeUsage(NpgsqlBatch batch, Guid runId) => batch.Append(TreeUsage, P.Uuid(runId));

    /// <summary>Reads <see cref="TreeUsage"/>'s row: the token counts summed over the run and its descendants.</summary>
    public static Usage ReadTreeUsage(NpgsqlDataReader r) => new()
    {
        InputTokens = r.GetInt64(TreeInputColumn),
        OutputTokens = r.GetInt64(TreeOutputColumn),
        CacheCreationInputTokens = r.GetInt64(TreeCacheCreationColumn),
        CacheReadInputTokens = r.GetInt64(TreeCacheReadColumn),
    };

    public static string Prefixed(string alias) => string.Join(", ", Columns.Split(", ").Select(c => alias + "." + c));

    /// <summary>How many columns <see cref="Columns"/> lists: the index of the first column after them.</summary>
    public static readonly int ColumnCount = Columns.Split(", ").Length;

    /// <summary>The ids of the runs claimed earlier in the same transaction (agentpg_claim_runs sets them), for the reads
    /// that follow the claim in its batch (<see cref="AgentSql.ForClaimed"/>, <see cref="MessageSql.ContextsForClaimed"/>).
    /// Empty when nothing was claimed.</summary>
    public const string ClaimedIds = "string_to_array(current_setting('agentpg.claimed_runs', true), ',')::uuid[]";

    /// <summary>The agents of the runs claimed earlier in the same transaction (agentpg_claim_runs sets them): the agent
    /// reads after a claim need no join to agentpg_runs, whose plan a connection may have cached for a small table.</summary>
    public const string ClaimedAgentIds = "string_to_array(current_setting('agentpg.claimed_agents', true), ',')::uuid[]";

    // The iteration's columns before the run's in ForPoll, in the order ReadForPoll reads them.
    private const string PollColumns =
        "i.id, i.iteration_number, i.batch_id, i.batch_expires_at, i.batch_resubmit_count, i.batch_expired_count, i.extended_context, i.max_tokens, " +
        "i.input_tokens, i.output_tokens, i.cache_creation_input_tokens, i.cache_read_input_tokens, i.batch_unavailable_since, i.batch_unavailable_count, " +
        // (No ", " inside a column: PollColumnCount splits on it.)
        "i.batch_resubmit_at IS NOT NULL, coalesce(i.web_search_requests,0), coalesce(i.web_fetch_requests,0), i.cache_creation_1h_input_tokens";

    private static readonly int PollColumnCount = PollColumns.Split(", ").Length;

    /// <summary>Adds <see cref="Claim"/>: up to <paramref name="count"/> pending runs of <paramref name="mode"/> for the
    /// instance; read each row with <see cref="ReadClaimed"/>.</summary>
    public void AddClaim(NpgsqlBatch batch, string instanceId, int count, RunMode mode)
        => batch.Append(Claim, P.Text(instanceId), P.Int(count), P.Text(mode.ToDb()));

    /// <summary>Reads a row of <see cref="Claim"/>: the run, then the previous iteration's outcome and the trace context.</summary>
    public static ClaimedRun ReadClaimed(NpgsqlDataReader r)
    {
        var run = Read(r);
        var c = ColumnCount;
        var previous = r.IsDBNull(c)
            ? null
            : new PreviousIteration(r.GetString(c), r.IsDBNull(c + 1) ? null : r.GetString(c + 1), r.IsDBNull(c + 2) ? null : r.GetString(c + 2),
                r.IsDBNull(c + 3) ? null : r.GetInt32(c + 3), r.GetBoolean(c + 4));
        return new ClaimedRun(run, previous, iterationStarted: true) { TraceParent = r.IsDBNull(c + 5) ? null : r.GetString(c + 5) };
    }

    /// <summary>Adds <see cref="Fence"/> for the run's claim by <paramref name="instanceId"/>; with <paramref name="iterationId"/>,
    /// also checks that it is still the run's current iteration.</summary>
    public void AddFence(NpgsqlBatch batch, Run run, string instanceId, Guid? iterationId)
        => batch.Append(Fence, P.Uuid(run.Id), P.Text(instanceId), P.Long(run.ClaimEpoch), P.Uuid(iterationId));

    /// <summary>Adds <see cref="StillClaimed"/> for the run's claim by <paramref name="instanceId"/>.</summary>
    public void AddStillClaimed(NpgsqlBatch batch, Run run, string instanceId)
        => batch.Append(StillClaimed, P.Uuid(run.Id), P.Text(instanceId), P.Long(run.ClaimEpoch));

    /// <summary>Adds <see cref="LockParent"/> for a child run (nothing for a root run).</summary>
    public void AddLockParent(NpgsqlBatch batch, Run run)
    {
        if (run.ParentRunId is { } parent)
        {
            batch.Append(LockParent, P.Uuid(parent));
        }
    }

    /// <summary>A command for <see cref="Progress"/> of the run's claim by <paramref name="instanceId"/>.</summary>
    public NpgsqlCommand ProgressCommand(NpgsqlDataSource dataSource, Run run, string instanceId)
        => Db.Command(dataSource, null, Progress, P.Uuid(run.Id), P.Long(run.ClaimEpoch), P.Text(instanceId));

    /// <summary>Adds <see cref="StartIteration"/>.</summary>
    public void AddStartIteration(NpgsqlBatch batch, Guid runId, int iterationNumber, Guid iterationId)
        => batch.Append(StartIteration, P.Uuid(runId), P.Int(iterationNumber), P.Uuid(iterationId));

    /// <summary>Adds <see cref="Complete"/>; its result holds one row, read with <see cref="ReadNextRunModeAsync"/>.</summary>
    public void AddComplete(NpgsqlBatch batch, Guid runId, string responseText, string stopReason, Usage usage)
        => batch.Append(Complete, P.Uuid(runId), P.Text(responseText), P.Text(stopReason), P.Long(usage.InputTokens), P.Long(usage.OutputTokens),
            P.Long(usage.CacheCreationInputTokens), P.Long(usage.CacheReadInputTokens));

    /// <summary>Reads every result of a batch holding <see cref="Complete"/> and returns its next_run_mode (null: none).</summary>
    public static async Task<string?> ReadNextRunModeAsync(NpgsqlDataReader reader, CancellationToken cancellationToken)
    {
        string? next = null;
        do
        {
            if (reader.FieldCount > 0 && reader.GetName(0) == "next_run_mode" && await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                next = reader.IsDBNull(0) ? null : reader.GetString(0);
            }
        }
        while (await reader.NextResultAsync(cancellationToken).ConfigureAwait(false));

        return next;
    }

    /// <summary>Adds <see cref="Continue"/> (the claim is kept: <paramref name="inPlace"/>) or <see cref="ContinueLater"/>
    /// (the run is queued again), counting one continuation.</summary>
    public void AddContinue(NpgsqlBatch batch, Guid runId, Usage usage, bool inPlace)
        => batch.Append(inPlace ? Continue : ContinueLater, P.Uuid(runId), P.Long(usage.InputTokens), P.Long(usage.OutputTokens),
            P.Long(usage.CacheCreationInputTokens), P.Long(usage.CacheReadInputTokens), P.Int(1));

    /// <summary>Adds <see cref="Fail"/> with the failed iteration's usage.</summary>
    public void AddFail(NpgsqlBatch batch, Guid runId, string errorType, string message, Usage usage)
        => batch.Append(Fail, P.Uuid(runId), P.Text(errorType), P.Text(message), P.Long(usage.InputTokens), P.Long(usage.OutputTokens),
            P.Long(usage.CacheCreationInputTokens), P.Long(usage.CacheReadInputTokens));

    /// <summary>Adds <see cref="SetState"/>.</summary>
    public void AddSetState(NpgsqlBatch batch, Guid runId, RunState state) => batch.Append(SetState, P.Uuid(runId), P.Text(state.ToDb()));

    /// <summary>Adds <see cref="CreateToolExecutions"/>: <paramref name="executionsJson"/> the executions (a JSON array),
    /// <paramref name="updatesJson"/> the run's counters and answer (a JSON object).</summary>
    public void AddCreateToolExecutions(NpgsqlBatch batch, Run run, string instanceId, string executionsJson, string updatesJson)
        => batch.Append(CreateToolExecutions, P.Jsonb(executionsJson), P.Uuid(run.Id), P.Jsonb(updatesJson), P.Text(instanceId), P.Long(run.ClaimEpoch));

    /// <summary>A command for <see cref="ContinueStuckPendingTools"/>: its scalar is how many runs it continued.</summary>
    public NpgsqlCommand ContinueStuckPendingToolsCommand(NpgsqlDataSource dataSource) => Db.Command(dataSource, null, ContinueStuckPendingTools);

    /// <summary>A command for <see cref="AdoptBatchRun"/>: its scalar is the new claim epoch (null: not adopted).</summary>
    public NpgsqlCommand AdoptBatchRunCommand(NpgsqlDataSource dataSource, Guid runId, string instanceId)
        => Db.Command(dataSource, null, AdoptBatchRun, P.Uuid(runId), P.Text(instanceId));

    /// <summary>A command for <see cref="ForPoll"/>: batches of <paramref name="instanceId"/> and orphaned ones last polled more than
    /// <paramref name="interval"/> ago, at most <paramref name="max"/>; read each row with <see cref="ReadForPoll"/>.</summary>
    public NpgsqlCommand ForPollCommand(NpgsqlDataSource dataSource, string instanceId, TimeSpan interval, int max)
        => Db.Command(dataSource, null, ForPoll, P.Text(instanceId), P.Interval(interval), P.Int(max));

    /// <summary>Reads a row of <see cref="ForPoll"/>.</summary>
    public static BatchPollItem ReadForPoll(NpgsqlDataReader r)
        => new(r.GetGuid(0), r.GetInt32(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetFieldValue<DateTimeOffset>(3), r.GetInt32(4), r.GetInt32(5),
            r.GetBoolean(6), r.IsDBNull(7) ? null : r.GetInt32(7),
            new Usage
            {
                InputTokens = r.GetInt32(8), OutputTokens = r.GetInt32(9), CacheCreationInputTokens = r.GetInt32(10), CacheReadInputTokens = r.GetInt32(11),
                WebSearchRequests = r.GetInt32(15), WebFetchRequests = r.GetInt32(16), CacheCreation1hInputTokens = r.GetInt32(17),
            },
            Read(r, PollColumnCount))
        {
            UnavailableSince = r.IsDBNull(12) ? null : r.GetFieldValue<DateTimeOffset>(12),
            UnavailableCount = r.GetInt32(13),
            ResubmitDue = r.GetBoolean(14),
            TraceParent = r.IsDBNull(PollColumnCount + ColumnCount) ? null : r.GetString(PollColumnCount + ColumnCount),
        };

    /// <summary>A command for <see cref="CallbackSweep"/> over runs and their creating transactions (null: committed); read
    /// each row with <see cref="ReadCallbackSweep"/>.</summary>
    public NpgsqlCommand CallbackSweepCommand(NpgsqlDataSource dataSource, IReadOnlyList<Guid> runIds, IReadOnlyList<string?> transactionIds)
        => Db.Command(dataSource, null, CallbackSweep, P.UuidArray(runIds), P.TextArray(transactionIds!));

    /// <summary>Reads a row of <see cref="CallbackSweep"/>: the run, its state (null: not visible), its transaction's status.</summary>
    public static (Guid RunId, string? State, string? TransactionStatus) ReadCallbackSweep(NpgsqlDataReader r)
        => (r.GetGuid(0), r.IsDBNull(1) ? null : r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2));

    /// <summary>Runs <see cref="States"/>: each run's state, null for a run that does not exist.</summary>
    public async Task<IReadOnlyDictionary<Guid, RunState?>> StatesAsync(NpgsqlDataSource dataSource, IReadOnlyList<Guid> runIds, CancellationToken cancellationToken)
    {
        var rows = await Db.Command(dataSource, null, States, P.UuidArray(runIds))
            .QueryListAsync(static r => (Id: r.GetGuid(0), State: r.IsDBNull(1) ? (RunState?)null : DbEnums.ParseRunState(r.GetString(1))), cancellationToken)
            .ConfigureAwait(false);
        var states = new Dictionary<Guid, RunState?>(rows.Count);
        foreach (var (id, state) in rows)
        {
            states[id] = state;
        }

        return states;
    }

    public static Run Read(NpgsqlDataReader r) => Read(r, 0);

    /// <summary>Reads a run whose columns start at <paramref name="offset"/> (after the columns of a joined table).</summary>
    public static Run Read(NpgsqlDataReader r, int offset)
    {
        var options = JsonMapping.FromJsonObject(r.GetString(offset + 29));
        return new Run
        {
            Id = r.GetGuid(offset + 0),
            SessionId = r.GetGuid(offset + 1),
            AgentId = r.GetGuid(offset + 2),
            RunMode = DbEnums.ParseRunMode(r.GetString(offset + 3)),
            ParentRunId = r.IsDBNull(offset + 4) ? null : r.GetGuid(offset + 4),
            ParentToolExecutionId = r.IsDBNull(offset + 5) ? null : r.GetGuid(offset + 5),
            Depth = r.GetInt32(offset + 6),
            State = DbEnums.ParseRunState(r.GetString(offset + 7)),
            PreviousState = r.IsDBNull(offset + 8) ? null : DbEnums.ParseRunState(r.GetString(offset + 8)),
            Prompt = r.GetString(offset + 9),
            IdempotencyKey = r.IsDBNull(offset + 10) ? null : r.GetString(offset + 10),
            CurrentIteration = r.GetInt32(offset + 11),
            CurrentIterationId = r.IsDBNull(offset + 12) ? null : r.GetGuid(offset + 12),
            ResponseText = r.IsDBNull(offset + 13) ? null : r.GetString(offset + 13),
            StopReason = r.IsDBNull(offset + 14) ? null : r.GetString(offset + 14),
            Usage = new Usage
            {
                InputTokens = r.GetInt64(offset + 15),
                OutputTokens = r.GetInt64(offset + 16),
                CacheCreationInputTokens = r.GetInt64(offset + 17),
                CacheReadInputTokens = r.GetInt64(offset + 18),
            },
            IterationCount = r.GetInt32(offset + 19),
            ToolIterations = r.GetInt32(offset + 20),
            ContinuationCount = r.GetInt32(offset + 21),
            ErrorMessage = r.IsDBNull(offset + 22) ? null : r.GetString(offset + 22),
            ErrorType = r.IsDBNull(offset + 23) ? null : r.GetString(offset + 23),
            CreatedByInstanceId = r.IsDBNull(offset + 24) ? null : r.GetString(offset + 24),
            ClaimedByInstanceId = r.IsDBNull(offset + 25) ? null : r.GetString(offset + 25),
            ClaimedAt = r.IsDBNull(offset + 26) ? null : r.GetFieldValue<DateTimeOffset>(offset + 26),
            ClaimEpoch = r.GetInt64(offset + 27),
            Variables = JsonMapping.FromJsonObject(r.GetString(offset + 28)),
            OverrideInstructions = options.TryGetValue(RunOptionKeys.OverrideInstructions, out var o) ? o as string : null,
            AppendInstructions = options.TryGetValue(RunOptionKeys.AppendInstructions, out var a) ? a as string : null,
            // Stored as its JSON text (Internal/OutputSchemas.cs).
            OutputSchema = options.TryGetValue(RunOptionKeys.OutputSchema, out var schema) && schema is string text ? OutputSchemas.Parse(text) : null,
            MaxIterations = options.TryGetValue(RunOptionKeys.MaxIterations, out var max) && max is long maxIterations ? (int)maxIterations : null,
            TokenBudget = options.TryGetValue(RunOptionKeys.TokenBudget, out var budget) && budget is long tokenBudget ? tokenBudget : null,
            CreatedAt = r.GetFieldValue<DateTimeOffset>(offset + 30),
            StartedAt = r.IsDBNull(offset + 31) ? null : r.GetFieldValue<DateTimeOffset>(offset + 31),
            FinalizedAt = r.IsDBNull(offset + 32) ? null : r.GetFieldValue<DateTimeOffset>(offset + 32),
            RescueAttempts = r.GetInt32(offset + 33),
            LastRescueAt = r.IsDBNull(offset + 34) ? null : r.GetFieldValue<DateTimeOffset>(offset + 34),
        };
    }
}

/// <summary>A run to create (<see cref="RunSql.CreateAsync"/>).</summary>
internal sealed record NewRun(Guid SessionId, Guid AgentId, string Prompt, RunMode Mode, string InstanceId, string VariablesJson, string OptionsJson,
    string? IdempotencyKey, string? TraceParent);

/// <summary>What <see cref="RunSql.CreateAsync"/> did.</summary>
internal sealed record CreatedRun
{
    /// <summary>Whether the session exists (nothing was done when it does not).</summary>
    public required bool SessionFound { get; init; }

    /// <summary>The new run; null when the idempotency key is taken or (Reject) the session is busy.</summary>
    public Guid? Id { get; init; }

    /// <summary>The root runs Interrupt cancelled.</summary>
    public IReadOnlyList<Guid> Interrupted { get; init; } = [];

    /// <summary>Per root run Interrupt cancelled: its mode and how many runs were cancelled (it and its descendants), for agentpg.runs.</summary>
    public IReadOnlyList<(string Mode, int Count)> CancelledRuns { get; init; } = [];

    /// <summary>The Message Batches of the cancelled runs, to cancel at the API after the commit.</summary>
    public string[] BatchIdsToCancel { get; init; } = [];

    /// <summary>The creating transaction (xid8 as text), when asked for.</summary>
    public string? CreatingTransaction { get; init; }
}

/// <summary>The run that holds an idempotency key.</summary>
/// <summary>The run that holds an idempotency key, and whether a repeat asks for the same variables and instructions.</summary>
internal sealed record IdempotentRun(Guid Id, Guid AgentId, string Prompt, RunMode Mode, bool SameVariables, bool SameOptions);

/// <summary>A run about to be regenerated: its state, whether it is a child run, and the newer root run of its session if any.</summary>
internal sealed record RegenerateTarget(string State, bool IsChild, Guid? Later, Guid? CompactedBy);

/// <summary>Keys of agentpg_runs.options.</summary>
internal static class RunOptionKeys
{
    public const string OverrideInstructions = "override_instructions";
    public const string AppendInstructions = "append_instructions";
    public const string OutputSchema = "output_schema";
    public const string MaxIterations = "max_iterations";

    /// <summary>The tree's budget: set by the root's RunOptions.TokenBudget, and on each child run when it is created
    /// (ToolExecutionSql.CreateChildRun), from its root's.</summary>
    public const string TokenBudget = "token_budget";
}
