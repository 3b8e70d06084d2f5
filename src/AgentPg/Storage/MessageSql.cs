using System.Text.Json;
using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_messages and agentpg_content_blocks.</summary>
internal sealed class MessageSql
{
    /// <summary>In a worker's batch, before a conversation read: plan it on its indexes. The workers' statements are
    /// prepared, and a generic plan made while the tables were still small (or their statistics stale, as on a fresh
    /// schema before autovacuum's first analyze) may read the messages with a sequential scan, a cost that then grows with
    /// the table until the next analyze replans it. Every worker read has an index path, so this only removes that risk.
    /// Local to the transaction.</summary>
    public const string IndexPlans = "SELECT set_config('enable_seqscan', 'off', true)";

    // Messages joined with their blocks; rows come ordered by message, then block. Read with ReadMessages.
    private const string JoinedColumns =
        "m.id, m.session_id, m.run_id, m.role::text, m.usage::text, m.is_preserved, m.is_summary, m.metadata::text, m.created_at, " +
        "b.block_index, b.type::text, b.text, b.signature, b.tool_use_id, b.tool_name, b.tool_input::text, b.tool_result_for_use_id, " +
        "b.tool_content, b.is_error, b.source::text, b.raw::text";

    public MessageSql(SchemaName s)
    {
        var m = $"{s}.agentpg_messages";
        var b = $"{s}.agentpg_content_blocks";
        // $1 id, $2 session, $3 run, $4 role, $5 usage. Idempotent (a retried step whose first attempt committed).
        Insert = $"INSERT INTO {m} (id, session_id, run_id, role, usage) VALUES ($1, $2, $3, $4::{s}.agentpg_message_role, $5) ON CONFLICT (id) DO NOTHING";
        // The same without ON CONFLICT, for steps that cannot run twice: their fence fails once the step committed (the run
        // left the claim or the iteration), so no retry gets this far. A plain insert skips the speculative insertion
        // (an arbiter index probe and a confirmation WAL record per row).
        InsertOnce = $"INSERT INTO {m} (id, session_id, run_id, role, usage) VALUES ($1, $2, $3, $4::{s}.agentpg_message_role, $5)";
        // All blocks of one message in one statement. $1 message id, then one array per column.
        var insertBlocks = $"""
            INSERT INTO {b} (message_id, block_index, type, text, signature, tool_use_id, tool_name, tool_input,
                             tool_result_for_use_id, tool_content, is_error, source, search_results, raw)
            SELECT $1, x.idx, x.type::{s}.agentpg_content_type, x.text, x.signature, x.tool_use_id, x.tool_name, x.tool_input,
                   x.result_for, x.tool_content, x.is_error, x.source, x.search_results, x.raw
              FROM unnest($2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::jsonb[], $9::text[],
                          $10::text[], $11::bool[], $12::jsonb[], $13::jsonb[], $14::jsonb[])
                   AS x(idx, type, text, signature, tool_use_id, tool_name, tool_input, result_for, tool_content, is_error, source,
                        search_results, raw)
            """;
        InsertBlocks = insertBlocks + "\nON CONFLICT ON CONSTRAINT content_block_unique_index DO NOTHING";
        InsertBlocksOnce = insertBlocks;
        // One text block, for prompts.
        InsertTextBlock = $"INSERT INTO {b} (message_id, block_index, type, text) VALUES ($1, 0, 'text', $2) ON CONFLICT ON CONSTRAINT content_block_unique_index DO NOTHING";
        BySession = $"SELECT {JoinedColumns} FROM {m} m LEFT JOIN {b} b ON b.message_id = m.id WHERE m.session_id = $1 ORDER BY m.seq, b.block_index";
        ById = $"SELECT {JoinedColumns} FROM {m} m LEFT JOIN {b} b ON b.message_id = m.id WHERE m.id = $1 ORDER BY b.block_index";
        ByIds = $"SELECT {JoinedColumns} FROM {m} m LEFT JOIN {b} b ON b.message_id = m.id WHERE m.id = ANY($1) ORDER BY m.seq, b.block_index";
        // A root run sees the session's root conversation: messages of depth-0 runs and compaction summaries (the only
        // messages without a run). Child runs of delegations write to the same session and are excluded, and so are the turns
        // of root runs that were cancelled or failed (review D22): they stay stored (GetMessagesAsync shows them), but a
        // cancelled question is not merged into the next prompt, and a failed run's tool rounds are not continued later.
        RootContext = $"""
            SELECT {JoinedColumns}
              FROM {m} m
              LEFT JOIN {b} b ON b.message_id = m.id
             WHERE m.session_id = $1
               AND ((m.run_id IS NULL AND m.is_summary)
                    OR EXISTS (SELECT 1 FROM {s}.agentpg_runs r WHERE r.id = m.run_id AND r.depth = 0 AND r.state NOT IN ('cancelled', 'failed')))
             ORDER BY m.seq, b.block_index
            """;
        // A child run sees only its own messages: each delegation starts fresh with its task.
        RunContext = $"SELECT {JoinedColumns} FROM {m} m LEFT JOIN {b} b ON b.message_id = m.id WHERE m.run_id = $1 ORDER BY m.seq, b.block_index";
        // The final answer of run $1: the response of its current iteration $2, else its last assistant message.
        FinalOfRun = $"""
            SELECT {JoinedColumns} FROM {m} m LEFT JOIN {b} b ON b.message_id = m.id
             WHERE m.id = coalesce((SELECT response_message_id FROM {s}.agentpg_iterations WHERE id = $2),
                                   (SELECT id FROM {m} WHERE run_id = $1 AND role = 'assistant' ORDER BY seq DESC LIMIT 1))
             ORDER BY b.block_index
            """;
    }

    public string Insert { get; }

    public string InsertOnce { get; }

    public string InsertBlocks { get; }

    public string InsertBlocksOnce { get; }

    public string InsertTextBlock { get; }

    public string BySession { get; }

    public string ById { get; }

    public string ByIds { get; }

    public string RootContext { get; }

    public string RunContext { get; }

    public string FinalOfRun { get; }

    public static void AddBlockArrays(NpgsqlParameterCollection parameters, Guid messageId, IReadOnlyList<StoredBlock> blocks)
    {
        parameters.Add(P.Uuid(messageId));
        parameters.Add(P.IntArray([.. Enumerable.Range(0, blocks.Count)]));
        parameters.Add(P.TextArray([.. blocks.Select(b => b.DbType)]));
        parameters.Add(TextArray(blocks.Select(b => b.Text)));
        parameters.Add(TextArray(blocks.Select(b => b.Signature)));
        parameters.Add(TextArray(blocks.Select(b => b.ToolUseId)));
        parameters.Add(TextArray(blocks.Select(b => b.ToolName)));
        parameters.Add(P.JsonbArray([.. blocks.Select(b => b.ToolInputJson)]));
        parameters.Add(TextArray(blocks.Select(b => b.ToolResultForUseId)));
        parameters.Add(TextArray(blocks.Select(b => b.ToolContent)));
        parameters.Add(P.BoolArray([.. blocks.Select(b => b.IsError)]));
        parameters.Add(P.JsonbArray([.. blocks.Select(b => b.SourceJson)]));
        parameters.Add(P.JsonbArray([.. blocks.Select(b => b.SearchResultsJson)]));
        parameters.Add(P.JsonbArray([.. blocks.Select(b => b.RawJson)]));
    }

    private static NpgsqlParameter TextArray(IEnumerable<string?> values)
        => new() { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text, Value = values.Select(v => (object?)v ?? DBNull.Value).ToArray() };

    /// <summary>Groups joined message/block rows into messages.</summary>
    public static async Task<List<Message>> ReadMessagesAsync(NpgsqlDataReader r, CancellationToken cancellationToken)
    {
        var messages = new List<Message>();
        Message? current = null;
        List<ContentBlock>? blocks = null;
        while (await r.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var id = r.GetGuid(0);
            if (current is null || current.Id != id)
            {
                if (current is not null)
                {
                    messages.Add(current with { Content = blocks! });
                }

                blocks = [];
                current = new Message
                {
                    Id = id,
                    SessionId = r.GetGuid(1),
                    RunId = r.IsDBNull(2) ? null : r.GetGuid(2),
                    Role = DbEnums.ParseMessageRole(r.GetString(3)),
                    Usage = ReadUsage(r.GetString(4)),
                    IsPreserved = r.GetBoolean(5),
                    IsSummary = r.GetBoolean(6),
                    Metadata = JsonMapping.FromJsonObject(r.GetString(7)),
                    CreatedAt = r.GetFieldValue<DateTimeOffset>(8),
                };
            }

            if (!r.IsDBNull(9))
            {
                blocks!.Add(ReadBlock(r));
            }
        }

        if (current is not null)
        {
            messages.Add(current with { Content = blocks! });
        }

        return messages;
    }

    private static ContentBlock ReadBlock(NpgsqlDataReader r)
    {
        var raw = r.IsDBNull(20) ? (JsonElement?)null : Parse(r.GetString(20));
        var type = r.GetString(10);
        if (type == "other" && raw is { ValueKind: JsonValueKind.Object } rawObject && rawObject.TryGetProperty("type", out var t))
        {
            type = t.GetString() ?? type;
        }

        return new ContentBlock
        {
            Type = type,
            Text = r.IsDBNull(11) ? null : r.GetString(11),
            Signature = r.IsDBNull(12) ? null : r.GetString(12),
            ToolUseId = r.IsDBNull(13) ? null : r.GetString(13),
            ToolName = r.IsDBNull(14) ? null : r.GetString(14),
            ToolInput = r.IsDBNull(15) ? null : Parse(r.GetString(15)),
            ToolResultForUseId = r.IsDBNull(16) ? null : r.GetString(16),
            ToolContent = r.IsDBNull(17) ? null : r.GetString(17),
            IsError = r.GetBoolean(18),
            Source = r.IsDBNull(19) ? null : Parse(r.GetString(19)),
            ToolContentBlocks = type == ContentTypes.ToolResult && raw is { ValueKind: JsonValueKind.Object } rawResult
                                && rawResult.TryGetProperty("content", out var content) && content.ValueKind == JsonValueKind.Array
                ? ContentBlocks.FromJsonArray(content)
                : [],
            Raw = raw,
        };
    }

    private static JsonElement Parse(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return doc.RootElement.Clone();
    }

    public static Usage ReadUsage(string json)
    {
        if (json is "{}" or "")
        {
            return Usage.Zero;
        }

        using var doc = JsonDocument.Parse(json);
        var e = doc.RootElement;
        return new Usage
        {
            InputTokens = Get(e, "input_tokens"),
            OutputTokens = Get(e, "output_tokens"),
            CacheCreationInputTokens = Get(e, "cache_creation_input_tokens"),
            CacheReadInputTokens = Get(e, "cache_read_input_tokens"),
        };

        static long Get(JsonElement e, string name) => e.TryGetProperty(name, out var v) && v.TryGetInt64(out var l) ? l : 0;
    }

    public static string UsageJson(Usage usage)
        => JsonMapping.Invariant($"{{\"input_tokens\":{usage.InputTokens},\"output_tokens\":{usage.OutputTokens},\"cache_creation_input_tokens\":{usage.CacheCreationInputTokens},\"cache_read_input_tokens\":{usage.CacheReadInputTokens}}}");

    // Client and services (AgentPgClient*, Compaction/).

    /// <summary>Every message of a session in conversation order, child runs' messages included.</summary>
    public Task<List<Message>> BySessionAsync(NpgsqlDataSource dataSource, Guid sessionId, CancellationToken cancellationToken)
        => QueryMessagesAsync(Db.Command(dataSource, null, BySession, P.Uuid(sessionId)), cancellationToken);

    // Executes a command of message rows, reads them with ReadMessagesAsync and disposes the command.
    private static async Task<List<Message>> QueryMessagesAsync(NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                return await ReadMessagesAsync(reader, cancellationToken).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The messages with the given ids, in conversation order.</summary>
    public async Task<List<Message>> ByIdsAsync(NpgsqlDataSource dataSource, IReadOnlyList<Guid> ids, CancellationToken cancellationToken)
        => await QueryMessagesAsync(Db.Command(dataSource, null, ByIds, P.UuidArray(ids)), cancellationToken).ConfigureAwait(false);

    /// <summary>Adds <see cref="FinalOfRun"/> (rows for <see cref="ReadMessagesAsync"/>).</summary>
    public void AddFinalOfRun(NpgsqlBatch batch, Guid runId, Guid? iterationId) => batch.Append(FinalOfRun, P.Uuid(runId), P.Uuid(iterationId));

    /// <summary>Adds <see cref="RootContext"/> for a session (rows for <see cref="ReadMessagesAsync"/>).</summary>
    public void AddRootContext(NpgsqlBatch batch, Guid sessionId) => batch.Append(RootContext, P.Uuid(sessionId));
}

/// <summary>A content block ready to be written: the typed columns plus the raw JSON.</summary>
internal sealed record StoredBlock
{
    public required string DbType { get; init; }

    public string? Text { get; init; }

    public string? Signature { get; init; }

    public string? ToolUseId { get; init; }

    public string? ToolName { get; init; }

    public string? ToolInputJson { get; init; }

    public string? ToolResultForUseId { get; init; }

    public string? ToolContent { get; init; }

    public bool IsError { get; init; }

    public string? SourceJson { get; init; }

    public string? SearchResultsJson { get; init; }

    public string? RawJson { get; init; }
}
