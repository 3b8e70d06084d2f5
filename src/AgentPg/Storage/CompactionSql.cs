using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_compaction_events and agentpg_message_archive, and the conversation rewrites of compaction.</summary>
/// <remarks>Every write runs in one transaction that first locks the session row (<see cref="LockSessionAsync"/>), so two
/// compactions of one session, or a compaction and a restore, are serialised; run workers never lock the session row.</remarks>
internal sealed class CompactionSql
{
    public const string EventColumns =
        "id, session_id, strategy, reason, original_tokens, compacted_tokens, messages_removed, messages_pruned, summary_content, " +
        "preserved_message_ids::text, model_used, usage::text, coalesce(duration_ms, 0), created_at, restored_at";

    // Positions in EventColumns.
    private const int IdColumn = 0, SessionIdColumn = 1, StrategyColumn = 2, ReasonColumn = 3, OriginalTokensColumn = 4, CompactedTokensColumn = 5,
        RemovedColumn = 6, PrunedColumn = 7, SummaryColumn = 8, PreservedColumn = 9, ModelColumn = 10, UsageColumn = 11, DurationColumn = 12,
        CreatedAtColumn = 13, RestoredAtColumn = 14;

    // Positions in _eventForRestore's SELECT list, and in _activeRootRuns'.
    private const int RestoreSessionColumn = 0, RestoreRestoredColumn = 1, RestoreSummaryColumn = 2, RestoreLaterColumn = 3;
    private const int RunIdColumn = 0;

    private readonly string _lockSession;
    private readonly string _countMessages;
    private readonly string _activeRootRuns;
    private readonly string _insertEvent;
    private readonly string _archive;
    private readonly string _prune;
    private readonly string _remove;
    private readonly string _insertSummary;
    private readonly string _incrementCount;
    private readonly string _events;
    private readonly string _eventForRestore;
    private readonly string _deleteMessage;
    private readonly string _restorePruned;
    private readonly string _restoreMessages;

    public CompactionSql(SchemaName s)
    {
        var sessions = $"{s}.agentpg_sessions";
        var m = $"{s}.agentpg_messages";
        var events = $"{s}.agentpg_compaction_events";
        var archive = $"{s}.agentpg_message_archive";
        _lockSession = $"SELECT compaction_count FROM {sessions} WHERE id = $1 FOR UPDATE";
        _countMessages = $"SELECT count(*)::int FROM {m} WHERE session_id = $1 AND id = ANY($2)";
        // Root runs still in progress: their messages are never compacted by anyone but the worker holding the run.
        _activeRootRuns = $"""
            SELECT run_id FROM {s}.agentpg_run_queue WHERE session_id = $1 AND is_root
            """;
        _insertEvent = $"""
            INSERT INTO {events} (id, session_id, strategy, reason, original_tokens, compacted_tokens, messages_removed, messages_pruned,
                                  summary_content, summary_message_id, preserved_message_ids, model_used, usage, duration_ms)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
            """;
        // $1 event, $2 session, $3 removed ids, $4 pruned ids.
        _archive = $"""
            INSERT INTO {archive} (id, compaction_event_id, session_id, original_message)
            SELECT msg.id, $1, msg.session_id,
                   jsonb_build_object(
                       'format', 1,
                       'action', CASE WHEN msg.id = ANY($3) THEN 'removed' ELSE 'pruned' END,
                       'message', to_jsonb(msg),
                       'iterations', coalesce((SELECT jsonb_agg(i.id) FROM {s}.agentpg_iterations i WHERE i.run_id = msg.run_id AND i.response_message_id = msg.id), '[]'))
              FROM {m} msg
             WHERE msg.session_id = $2 AND (msg.id = ANY($3) OR msg.id = ANY($4))
            """;
        // Tool outputs longer than what pruning leaves, and those with images or documents, become the placeholder, after the
        // approver's note when the output starts with one (the note is one line, up to the blank line before the output:
        // Claude's tool_use keeps the input Claude wrote, and only the note says what ran); every other field stays (the
        // tool_use_id pairing included). An approver's rejection (is_error, no blocks) is kept whole: it is the approver's
        // word, not a tool's output. The same rule as Summarizer.IsPrunable and PrunedContent. $1 pruned message ids,
        // $2 placeholder, $3 the note's opening, $4 the rejection's opening.
        _prune = $"""
            UPDATE {m} msg
               SET content = (SELECT jsonb_agg(CASE WHEN x.blk ->> 'type' = 'tool_result'
                                                     AND (jsonb_typeof(x.blk -> 'content') = 'array' OR length(t.text) > length(k.kept))
                                                    THEN (x.blk - '{MessageContent.TextKey}') || jsonb_build_object('content', k.kept)
                                                    ELSE x.blk END ORDER BY x.n)
                                FROM jsonb_array_elements(msg.content) WITH ORDINALITY AS x(blk, n),
                                     LATERAL (SELECT coalesce(x.blk ->> '{MessageContent.TextKey}',
                                                              CASE WHEN jsonb_typeof(x.blk -> 'content') = 'string' THEN x.blk ->> 'content' END,
                                                              '') AS text) t,
                                     LATERAL (SELECT CASE WHEN x.blk -> 'is_error' = 'true'::jsonb AND jsonb_typeof(x.blk -> 'content') IS DISTINCT FROM 'array'
                                                               AND starts_with(t.text, $4) THEN t.text
                                                          ELSE CASE WHEN starts_with(t.text, $3) THEN split_part(t.text, E'\n\n', 1) || E'\n\n' ELSE '' END
                                                               || $2
                                                     END AS kept) k)
             WHERE msg.id = ANY($1) AND jsonb_array_length(msg.content) > 0
            """;
        _remove = $"DELETE FROM {m} WHERE session_id = $1 AND id = ANY($2)";
        // The summary takes the position (seq, free again once the prefix is deleted) of the oldest removed message, as a
        // user turn. $1 event, $2 session, $3 summary message id, $4 content.
        _insertSummary = $"""
            INSERT INTO {m} (id, seq, session_id, run_id, role, is_summary, content)
            SELECT $3, min((a.original_message->'message'->>'seq')::bigint), $2, NULL, 'user', TRUE, $4
              FROM {archive} a WHERE a.compaction_event_id = $1 AND a.original_message->>'action' = 'removed'
            """;
        _incrementCount = $"UPDATE {sessions} SET compaction_count = compaction_count + $2, updated_at = now() WHERE id = $1";
        _events = $"SELECT {EventColumns} FROM {events} WHERE session_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2";
        // The event, and whether a later compaction of its session is still in place.
        _eventForRestore = $"""
            SELECT e.session_id, e.restored_at IS NOT NULL, e.summary_message_id,
                   EXISTS (SELECT 1 FROM {events} later
                            WHERE later.session_id = e.session_id AND later.restored_at IS NULL
                              AND (later.created_at, later.id) > (e.created_at, e.id))
              FROM {events} e WHERE e.id = $1
            """;
        // Restore, in order: the summary goes (freeing its seq), pruned messages get their content back, removed messages
        // come back with their ids, seq, timestamps and content, then the iteration links.
        _deleteMessage = $"DELETE FROM {m} WHERE id = $1";
        _restorePruned = $"""
            UPDATE {m} msg SET content = a.original_message->'message'->'content'
              FROM {archive} a
             WHERE a.compaction_event_id = $1 AND a.original_message->>'action' = 'pruned' AND msg.id = a.id
            """;
        _restoreMessages = $"""
            INSERT INTO {m}
            SELECT (jsonb_populate_record(NULL::{m}, a.original_message->'message')).*
              FROM {archive} a WHERE a.compaction_event_id = $1 AND a.original_message->>'action' = 'removed'
            """;
        RestoreLinks = $"""
            UPDATE {s}.agentpg_iterations i SET response_message_id = a.id
              FROM {archive} a, jsonb_array_elements_text(a.original_message->'iterations') it
             WHERE a.compaction_event_id = $1 AND i.id = it::uuid
            """;
        FinishRestore = $"""
            WITH e AS (UPDATE {events} SET restored_at = now() WHERE id = $1 RETURNING session_id),
                 a AS (DELETE FROM {archive} WHERE compaction_event_id = $1)
            UPDATE {sessions} SET compaction_count = greatest(compaction_count - 1, 0), updated_at = now()
             WHERE id = (SELECT session_id FROM e)
            """;
    }

    private string RestoreLinks { get; }

    private string FinishRestore { get; }

    /// <summary>Locks the session row; returns its compaction count, or null when the session does not exist.</summary>
    public async Task<int?> LockSessionAsync(NpgsqlConnection connection, NpgsqlTransaction transaction, Guid sessionId, CancellationToken cancellationToken)
        => await Db.Command(connection, transaction, _lockSession, P.Uuid(sessionId)).ScalarAsync(cancellationToken).ConfigureAwait(false) as int?;

    /// <summary>How many of <paramref name="ids"/> are still messages of the session.</summary>
    public async Task<int> CountMessagesAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, Guid sessionId, IReadOnlyList<Guid> ids,
        CancellationToken cancellationToken)
        => (int)(await Db.Command(connection, transaction, _countMessages, P.Uuid(sessionId), P.UuidArray(ids)).ScalarAsync(cancellationToken)
            .ConfigureAwait(false))!;

    /// <summary>Adds the session's active root runs (rows for <see cref="ReadRunId"/>).</summary>
    public void AddActiveRootRuns(NpgsqlBatch batch, Guid sessionId) => batch.Append(_activeRootRuns, P.Uuid(sessionId));

    public static Guid ReadRunId(NpgsqlDataReader reader) => reader.GetGuid(RunIdColumn);

    /// <summary>The writes of one compaction, in order: the event, the archive, then the rewrite.</summary>
    public NpgsqlBatch Write(CompactionWrite w)
    {
        var batch = new NpgsqlBatch();
        batch.Append(_insertEvent,
            P.Uuid(w.EventId), P.Uuid(w.SessionId), P.Text(w.Strategy), P.Text(w.Reason), P.Int(ClampInt(w.OriginalTokens)), P.Int(ClampInt(w.CompactedTokens)),
            P.Int(w.Removed.Count), P.Int(w.Pruned.Count), P.Text(w.Summary), P.Uuid(w.Summary is null ? null : w.SummaryMessageId),
            P.Jsonb(JsonMapping.Invariant($"[{string.Join(",", w.Preserved.Select(id => "\"" + id.ToString("D") + "\""))}]")),
            P.Text(w.ModelUsed), P.Jsonb(MessageSql.UsageJson(w.Usage)), P.Long((long)w.Duration.TotalMilliseconds));
        batch.Append(_archive, P.Uuid(w.EventId), P.Uuid(w.SessionId), P.UuidArray(w.Removed), P.UuidArray(w.Pruned));
        if (w.Pruned.Count > 0)
        {
            batch.Append(_prune, P.UuidArray(w.Pruned), P.Text(w.Placeholder), P.Text(w.ApprovalNotePrefix), P.Text(w.RejectionPrefix));
        }

        if (w.Removed.Count > 0)
        {
            batch.Append(_remove, P.Uuid(w.SessionId), P.UuidArray(w.Removed));
            if (w.Summary is not null)
            {
                batch.Append(_insertSummary, P.Uuid(w.EventId), P.Uuid(w.SessionId), P.Uuid(w.SummaryMessageId), P.Jsonb(MessageContent.Text(w.Summary)));
            }
        }

        batch.Append(_incrementCount, P.Uuid(w.SessionId), P.Int(1));
        return batch;
    }

    /// <summary>Adds the session's newest events (rows for <see cref="ReadEvent"/>).</summary>
    public void AddEvents(NpgsqlBatch batch, Guid sessionId, int limit) => batch.Append(_events, P.Uuid(sessionId), P.Int(limit));

    public static CompactionEvent ReadEvent(NpgsqlDataReader r) => new()
    {
        Id = r.GetGuid(IdColumn),
        SessionId = r.GetGuid(SessionIdColumn),
        Strategy = r.GetString(StrategyColumn) == "summarization" ? CompactionStrategy.Summarization : CompactionStrategy.Hybrid,
        Reason = r.GetString(ReasonColumn),
        OriginalTokens = r.GetInt32(OriginalTokensColumn),
        CompactedTokens = r.GetInt32(CompactedTokensColumn),
        MessagesRemoved = r.GetInt32(RemovedColumn),
        MessagesPruned = r.GetInt32(PrunedColumn),
        SummaryContent = r.IsDBNull(SummaryColumn) ? null : r.GetString(SummaryColumn),
        PreservedMessageIds = ParseIds(r.GetString(PreservedColumn)),
        ModelUsed = r.IsDBNull(ModelColumn) ? null : r.GetString(ModelColumn),
        Usage = MessageSql.ReadUsage(r.GetString(UsageColumn)),
        Duration = TimeSpan.FromMilliseconds(r.GetInt64(DurationColumn)),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(CreatedAtColumn),
        RestoredAt = r.IsDBNull(RestoredAtColumn) ? null : r.GetFieldValue<DateTimeOffset>(RestoredAtColumn),
    };

    /// <summary>The event to restore: its session, whether it was restored already, its summary message, and whether a later
    /// compaction of the session is still in place.</summary>
    public async Task<(Guid SessionId, bool Restored, Guid? SummaryId, bool LaterExists)?> EventForRestoreAsync(
        NpgsqlConnection connection, NpgsqlTransaction transaction, Guid eventId, CancellationToken cancellationToken)
    {
        var (found, row) = await Db.Command(connection, transaction, _eventForRestore, P.Uuid(eventId)).QueryFirstAsync(
            r => (r.GetGuid(RestoreSessionColumn), r.GetBoolean(RestoreRestoredColumn),
                r.IsDBNull(RestoreSummaryColumn) ? (Guid?)null : r.GetGuid(RestoreSummaryColumn), r.GetBoolean(RestoreLaterColumn)),
            cancellationToken).ConfigureAwait(false);
        return found ? row : null;
    }

    /// <summary>Undoes a compaction: summary removed, pruned content and removed messages put back, iteration links restored,
    /// event marked restored, archive rows deleted, compaction count decremented.</summary>
    public NpgsqlBatch Restore(Guid eventId, Guid? summaryMessageId)
    {
        var batch = new NpgsqlBatch();
        if (summaryMessageId is { } summary)
        {
            batch.Append(_deleteMessage, P.Uuid(summary));
        }

        batch.Append(_restorePruned, P.Uuid(eventId));
        batch.Append(_restoreMessages, P.Uuid(eventId));
        batch.Append(RestoreLinks, P.Uuid(eventId));
        batch.Append(FinishRestore, P.Uuid(eventId));
        return batch;
    }

    private static IReadOnlyList<Guid> ParseIds(string json)
    {
        using var doc = System.Text.Json.JsonDocument.Parse(json);
        return [.. doc.RootElement.EnumerateArray().Select(e => e.GetGuid())];
    }

    private static int ClampInt(long value) => (int)Math.Clamp(value, 0, int.MaxValue);

}

/// <summary>Everything one compaction writes.</summary>
internal sealed record CompactionWrite(
    Guid EventId,
    Guid SessionId,
    string Strategy,
    string Reason,
    long OriginalTokens,
    long CompactedTokens,
    IReadOnlyList<Guid> Removed,
    IReadOnlyList<Guid> Pruned,
    IReadOnlyList<Guid> Preserved,
    string Placeholder,
    string ApprovalNotePrefix,
    string RejectionPrefix,
    Guid SummaryMessageId,
    string? Summary,
    string? ModelUsed,
    Usage Usage,
    TimeSpan Duration);
