using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_iterations.</summary>
internal sealed class IterationSql
{
    private const string Columns =
        "id, run_id, iteration_number, is_streaming, trigger_type, batch_id, batch_status::text, batch_submitted_at, batch_completed_at, " +
        "batch_expires_at, batch_poll_count, max_tokens, stop_reason, response_message_id, has_tool_use, tool_execution_count, " +
        "input_tokens, output_tokens, cache_creation_input_tokens, cache_read_input_tokens, error_message, error_type, created_at, " +
        "started_at, completed_at, coalesce(web_search_requests, 0), coalesce(web_fetch_requests, 0)";

    public IterationSql(SchemaName s)
    {
        var t = $"{s}.agentpg_iterations";
        // $1 id, $2 run, $3 number, $4 streaming, $5 trigger, $6 max_tokens, $7 instance, $8 epoch
        Insert = $"""
            INSERT INTO {t} (id, run_id, iteration_number, is_streaming, trigger_type, max_tokens, instance_id, claim_epoch,
                             started_at, streaming_started_at)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, now(), CASE WHEN $4 THEN now() END)
            ON CONFLICT (id) DO NOTHING
            """;
        // $1 id, $2 stop reason, $3 response message, $4 tool execution count, $5..$8 tokens, $9 error type, $10 error message,
        // $11 max_tokens sent (null: keep), $12 whether the 1M-token context window was used, $13 the 1-hour cache writes (of $7),
        // $14 the model the request named, $15/$16 the web searches and fetches (NULL for none)
        Complete = $"""
            UPDATE {t}
               SET stop_reason = $2, response_message_id = $3, has_tool_use = $4 > 0, tool_execution_count = $4,
                   input_tokens = $5, output_tokens = $6, cache_creation_input_tokens = $7, cache_read_input_tokens = $8,
                   cache_creation_1h_input_tokens = $13, model = coalesce($14, model), web_search_requests = $15, web_fetch_requests = $16,
                   error_type = $9, error_message = $10, max_tokens = coalesce($11, max_tokens), extended_context = extended_context OR $12,
                   completed_at = now(), streaming_completed_at = CASE WHEN is_streaming THEN now() END,
                   batch_status = CASE WHEN batch_id IS NULL THEN batch_status ELSE 'ended' END,
                   batch_completed_at = CASE WHEN batch_id IS NULL THEN batch_completed_at ELSE now() END
             WHERE id = $1
            """;
        // The iteration of a failing run: $1 id, $2..$5 tokens, $6 error type, $7 error message, $8 the 1-hour cache writes (of $4),
        // $9/$10 the web searches and fetches (NULL for none), $11 the model its requests named (null: none sent, or a batch's,
        // which Submitted stored).
        Fail = $"""
            UPDATE {t}
               SET input_tokens = $2, output_tokens = $3, cache_creation_input_tokens = $4, cache_read_input_tokens = $5,
                   cache_creation_1h_input_tokens = $8, web_search_requests = $9, web_fetch_requests = $10, model = coalesce($11, model),
                   max_tokens = coalesce($12, max_tokens), extended_context = extended_context OR $13,
                   error_type = $6, error_message = $7, completed_at = coalesce(completed_at, now()),
                   batch_status = CASE WHEN batch_id IS NULL THEN batch_status ELSE 'ended' END
             WHERE id = $1
            """;
        // A batch was created for iteration $1: $2 batch id, $3 expiry, $4 max_tokens, $5 extended context, $6 resubmission after
        // a canceled or missing result (0/1), $7 expiry counted (0/1), $8..$11 the iteration's usage so far: answers it was
        // charged for and dropped (a result cut off by the context window), which its final result adds to the run, $12 when
        // Claude was first unavailable for it, $13 resubmission for Claude unavailable (0/1), $14 the 1-hour cache writes (of
        // $10), $15 the model the request names, $16/$17 the web searches and fetches of those answers (NULL for none). Ends a
        // wait (batch_resubmit_at). After the fence.
        Submitted = $"""
            UPDATE {t}
               SET batch_id = $2, batch_request_id = id::text, batch_status = 'in_progress', batch_submitted_at = now(),
                   batch_expires_at = $3, batch_last_poll_at = NULL, max_tokens = $4, extended_context = $5,
                   batch_resubmit_count = batch_resubmit_count + $6, batch_expired_count = batch_expired_count + $7,
                   input_tokens = $8, output_tokens = $9, cache_creation_input_tokens = $10, cache_read_input_tokens = $11,
                   cache_creation_1h_input_tokens = $14, model = coalesce($15, model), started_at = coalesce(started_at, now()),
                   web_search_requests = $16, web_fetch_requests = $17,
                   batch_unavailable_since = coalesce(batch_unavailable_since, $12),
                   batch_unavailable_count = batch_unavailable_count + $13, batch_resubmit_at = NULL
             WHERE id = $1
            """;
        // Iteration $1's batch ended errored with Claude unavailable: its request is submitted again after $2 (an interval),
        // by the database's clock as the poll's due time is; $3 when Claude was first unavailable for it. After the fence.
        ResubmitLater = $"""
            UPDATE {t}
               SET batch_resubmit_at = now() + $2, batch_unavailable_since = coalesce(batch_unavailable_since, $3)
             WHERE id = $1
            """;
        // Batch polling bookkeeping (not fenced: it changes nothing another holder relies on).
        Polled = $"UPDATE {t} SET batch_poll_count = batch_poll_count + 1, batch_last_poll_at = now() WHERE id = $1";
        // Batches of final runs still to cancel at the API: taken by one poller (SKIP LOCKED) and marked ended at once;
        // a cancel that then fails at the API only means the batch runs to its end and its result is ignored.
        TakeCancelingBatches = $"""
            UPDATE {t} SET batch_status = 'ended', batch_completed_at = coalesce(batch_completed_at, now())
             WHERE id IN (SELECT i.id
                            FROM {t} i JOIN {s}.agentpg_runs r ON r.id = i.run_id
                           WHERE i.batch_status = 'canceling' AND r.state IN ('completed', 'cancelled', 'failed')
                           LIMIT 20
                             FOR UPDATE OF i SKIP LOCKED)
            RETURNING batch_id
            """;
        // A run's cancel takes its batches as the poller's TakeCancelingBatches does, so each is cancelled at the API once,
        // by whichever comes first; a cancel the API refused is put back for the poller to try once more.
        TakeBatchesById = $"""
            UPDATE {t} SET batch_status = 'ended', batch_completed_at = coalesce(batch_completed_at, now())
             WHERE batch_id = ANY($1) AND batch_status = 'canceling'
            RETURNING batch_id
            """;
        ReopenBatchesById = $"UPDATE {t} SET batch_status = 'canceling' WHERE batch_id = ANY($1) AND batch_status = 'ended'";
        ByRun = $"SELECT {Columns} FROM {t} WHERE run_id = $1 ORDER BY iteration_number";
    }

    public string Insert { get; }

    public string Complete { get; }

    public string Fail { get; }

    public string Submitted { get; }

    public string ResubmitLater { get; }

    public string Polled { get; }

    public string TakeCancelingBatches { get; }

    public string TakeBatchesById { get; }

    public string ReopenBatchesById { get; }

    public string ByRun { get; }

    /// <summary>Adds <see cref="Insert"/> for an iteration of the run's claim by <paramref name="instanceId"/> (max_tokens is
    /// set when its result is recorded).</summary>
    public void AddInsert(NpgsqlBatch batch, Guid iterationId, Run run, int iterationNumber, bool streaming, string triggerType, string instanceId)
        => batch.Append(Insert, P.Uuid(iterationId), P.Uuid(run.Id), P.Int(iterationNumber), P.Bool(streaming), P.Text(triggerType), P.Int((int?)null),
            P.Text(instanceId), P.Long(run.ClaimEpoch));

    /// <summary>Adds <see cref="Complete"/>.</summary>
    public void AddComplete(NpgsqlBatch batch, Guid iterationId, string? stopReason, Guid? responseMessageId, int toolExecutionCount, Usage usage,
        string? errorType, string? errorMessage, int maxTokens, bool extendedContext, string? model)
        => batch.Append(Complete, P.Uuid(iterationId), P.Text(stopReason), P.Uuid(responseMessageId), P.Int(toolExecutionCount),
            P.Int((int)usage.InputTokens), P.Int((int)usage.OutputTokens), P.Int((int)usage.CacheCreationInputTokens),
            P.Int((int)usage.CacheReadInputTokens), P.Text(errorType), P.Text(errorMessage), P.Int(maxTokens), P.Bool(extendedContext),
            P.Int((int)usage.CacheCreation1hInputTokens), P.Text(model), Uses(usage.WebSearchRequests), Uses(usage.WebFetchRequests));

    /// <summary>Adds <see cref="Fail"/>; <paramref name="model"/>, <paramref name="maxTokens"/> and <paramref name="extendedContext"/>
    /// are what the iteration's last request named, if it sent any (null and false otherwise: the row keeps what it has).</summary>
    public void AddFail(NpgsqlBatch batch, Guid iterationId, Usage usage, string errorType, string errorMessage, string? model, int? maxTokens,
        bool extendedContext)
        => batch.Append(Fail, P.Uuid(iterationId), P.Int((int)usage.InputTokens), P.Int((int)usage.OutputTokens),
            P.Int((int)usage.CacheCreationInputTokens), P.Int((int)usage.CacheReadInputTokens), P.Text(errorType), P.Text(errorMessage),
            P.Int((int)usage.CacheCreation1hInputTokens), Uses(usage.WebSearchRequests), Uses(usage.WebFetchRequests), P.Text(model), P.Int(maxTokens),
            P.Bool(extendedContext));

    /// <summary>Adds <see cref="Submitted"/>: <paramref name="resubmission"/> counts a resubmission, <paramref name="afterExpiry"/>
    /// an expiry; <paramref name="usage"/> is the iteration's usage so far (answers it was charged for and dropped).</summary>
    public void AddSubmitted(NpgsqlBatch batch, Guid iterationId, string batchId, DateTimeOffset expiresAt, int maxTokens, bool extendedContext,
        bool resubmission, bool afterExpiry, Usage usage, DateTimeOffset? unavailableSince = null, bool afterUnavailable = false, string? model = null)
        => batch.Append(Submitted, P.Uuid(iterationId), P.Text(batchId), new NpgsqlParameter<DateTimeOffset> { TypedValue = expiresAt }, P.Int(maxTokens),
            P.Bool(extendedContext), P.Int(resubmission ? 1 : 0), P.Int(afterExpiry ? 1 : 0), P.Int((int)usage.InputTokens),
            P.Int((int)usage.OutputTokens), P.Int((int)usage.CacheCreationInputTokens), P.Int((int)usage.CacheReadInputTokens),
            P.TimestampTz(unavailableSince), P.Int(afterUnavailable ? 1 : 0), P.Int((int)usage.CacheCreation1hInputTokens), P.Text(model),
            Uses(usage.WebSearchRequests), Uses(usage.WebFetchRequests));

    // A server tool count: NULL when the answer ran none (the columns' common case; see the migration).
    private static NpgsqlParameter Uses(long count) => P.Int(count == 0 ? null : (int?)count);

    /// <summary>Adds <see cref="ResubmitLater"/>: the iteration's request is submitted again once <paramref name="wait"/> has passed.</summary>
    public void AddResubmitLater(NpgsqlBatch batch, Guid iterationId, TimeSpan wait, DateTimeOffset unavailableSince)
        => batch.Append(ResubmitLater, P.Uuid(iterationId), P.Interval(wait), P.TimestampTz(unavailableSince));

    /// <summary>A command for <see cref="Polled"/>.</summary>
    public NpgsqlCommand PolledCommand(NpgsqlDataSource dataSource, Guid iterationId) => Db.Command(dataSource, null, Polled, P.Uuid(iterationId));

    /// <summary>A command for <see cref="TakeCancelingBatches"/>; read each row with <see cref="ReadBatchId"/>.</summary>
    public NpgsqlCommand TakeCancelingBatchesCommand(NpgsqlDataSource dataSource) => Db.Command(dataSource, null, TakeCancelingBatches);

    /// <summary>Reads a row of <see cref="TakeCancelingBatches"/>.</summary>
    public static string ReadBatchId(NpgsqlDataReader r) => r.GetString(0);

    // Client and services (AgentPgClient*, Claude/BatchApi).

    /// <summary>Takes batches still to be cancelled, marking them ended (<see cref="TakeBatchesById"/>); returns those taken.</summary>
    public Task<List<string>> TakeBatchesAsync(NpgsqlDataSource dataSource, IReadOnlyList<string> batchIds, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, TakeBatchesById, P.TextArray(batchIds)).QueryListAsync(ReadBatchId, cancellationToken);

    /// <summary>Puts taken batches back to be cancelled by the poller (<see cref="ReopenBatchesById"/>).</summary>
    public Task<int> ReopenBatchesAsync(NpgsqlDataSource dataSource, IReadOnlyList<string> batchIds, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, ReopenBatchesById, P.TextArray(batchIds)).ExecuteAsync(cancellationToken);

    /// <summary>The iterations of a run, in order.</summary>
    public Task<List<Iteration>> ByRunAsync(NpgsqlDataSource dataSource, Guid runId, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, ByRun, P.Uuid(runId)).QueryListAsync(Read, cancellationToken);

    public static Iteration Read(NpgsqlDataReader r) => new()
    {
        Id = r.GetGuid(0),
        RunId = r.GetGuid(1),
        IterationNumber = r.GetInt32(2),
        IsStreaming = r.GetBoolean(3),
        TriggerType = r.GetString(4),
        BatchId = r.IsDBNull(5) ? null : r.GetString(5),
        BatchStatus = r.IsDBNull(6) ? null : DbEnums.ParseBatchStatus(r.GetString(6)),
        BatchSubmittedAt = r.IsDBNull(7) ? null : r.GetFieldValue<DateTimeOffset>(7),
        BatchCompletedAt = r.IsDBNull(8) ? null : r.GetFieldValue<DateTimeOffset>(8),
        BatchExpiresAt = r.IsDBNull(9) ? null : r.GetFieldValue<DateTimeOffset>(9),
        BatchPollCount = r.GetInt32(10),
        MaxTokens = r.IsDBNull(11) ? null : r.GetInt32(11),
        StopReason = r.IsDBNull(12) ? null : r.GetString(12),
        ResponseMessageId = r.IsDBNull(13) ? null : r.GetGuid(13),
        HasToolUse = r.GetBoolean(14),
        ToolExecutionCount = r.GetInt32(15),
        Usage = new Usage
        {
            InputTokens = r.GetInt32(16),
            OutputTokens = r.GetInt32(17),
            CacheCreationInputTokens = r.GetInt32(18),
            CacheReadInputTokens = r.GetInt32(19),
        },
        ErrorMessage = r.IsDBNull(20) ? null : r.GetString(20),
        ErrorType = r.IsDBNull(21) ? null : r.GetString(21),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(22),
        StartedAt = r.IsDBNull(23) ? null : r.GetFieldValue<DateTimeOffset>(23),
        CompletedAt = r.IsDBNull(24) ? null : r.GetFieldValue<DateTimeOffset>(24),
        ServerToolUse = r.GetInt32(25) == 0 && r.GetInt32(26) == 0
            ? ServerToolUsage.None
            : new ServerToolUsage { WebSearchRequests = r.GetInt32(25), WebFetchRequests = r.GetInt32(26) },
    };
}
