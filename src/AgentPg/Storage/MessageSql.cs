using System.Text.Json;
using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_messages (the content blocks are the row's content column, in Claude's wire format).</summary>
internal sealed class MessageSql
{
    /// <summary>In a worker's batch, before a conversation read: plan it on its indexes. The workers' statements are
    /// prepared, and a generic plan made while the tables were still small (or their statistics stale, as on a fresh
    /// schema before autovacuum's first analyze) may read the messages with a sequential scan, a cost that then grows with
    /// the table until the next analyze replans it. Every worker read has an index path, so this only removes that risk.
    /// Local to the transaction.</summary>
    public const string IndexPlans = "SELECT set_config('enable_seqscan', 'off', true)";

    // A message row with its content. Read with ReadMessages.
    private const string Columns =
        "m.id, m.session_id, m.run_id, m.role::text, m.usage::text, m.is_preserved, m.is_summary, m.metadata::text, m.created_at, m.content::text";

    public MessageSql(SchemaName s)
    {
        var m = $"{s}.agentpg_messages";
        // $1 id, $2 session, $3 run, $4 role, $5 usage, $6 content. Idempotent (a retried step whose first attempt committed).
        Insert = $"INSERT INTO {m} (id, session_id, run_id, role, usage, content) VALUES ($1, $2, $3, $4::{s}.agentpg_message_role, $5, $6) ON CONFLICT (id) DO NOTHING";
        // The same without ON CONFLICT, for steps that cannot run twice: their fence fails once the step committed (the run
        // left the claim or the iteration), so no retry gets this far. A plain insert skips the speculative insertion
        // (an arbiter index probe and a confirmation WAL record per row).
        InsertOnce = $"INSERT INTO {m} (id, session_id, run_id, role, usage, content) VALUES ($1, $2, $3, $4::{s}.agentpg_message_role, $5, $6)";
        BySession = $"SELECT {Columns} FROM {m} m WHERE m.session_id = $1 ORDER BY m.seq";
        ByIds = $"SELECT {Columns} FROM {m} m WHERE m.id = ANY($1) ORDER BY m.seq";
        // A root run sees the session's root conversation: messages of depth-0 runs and compaction summaries (the only
        // messages without a run). Child runs of delegations write to the same session and are excluded, and so are the turns
        // of root runs that were cancelled or failed (review D22): they stay stored (GetMessagesAsync shows them), but a
        // cancelled question is not merged into the next prompt, and a failed run's tool rounds are not continued later.
        var inRootConversation = $"""
            ((m.run_id IS NULL AND m.is_summary)
                    OR EXISTS (SELECT 1 FROM {s}.agentpg_runs r WHERE r.id = m.run_id AND r.depth = 0 AND r.state NOT IN ('cancelled', 'failed')))
            """;
        RootContext = $"""
            SELECT {Columns}
              FROM {m} m
             WHERE m.session_id = $1
               AND {inRootConversation}
             ORDER BY m.seq
            """;
        // A child run sees only its own messages: each delegation starts fresh with its task.
        RunContext = $"SELECT {Columns} FROM {m} m WHERE m.run_id = $1 ORDER BY m.seq";
        // The conversation of each run claimed earlier in the transaction (RootContext or RunContext), the run's id last,
        // ordered by run: read in the claim's batch for the claimed runs' first iterations.
        ContextsForClaimed = $"""
            SELECT {Columns}, c.id
              FROM {s}.agentpg_runs c
             CROSS JOIN LATERAL (
                   SELECT m.* FROM {m} m WHERE c.depth = 0 AND m.session_id = c.session_id AND {inRootConversation}
                   UNION ALL
                   SELECT m.* FROM {m} m WHERE c.depth > 0 AND m.run_id = c.id) m
             WHERE c.id = ANY ({RunSql.ClaimedIds})
             ORDER BY c.id, m.seq
            """;
        // The final answer of run $1: the response of its current iteration $2, else its last assistant message.
        FinalOfRun = $"""
            SELECT {Columns} FROM {m} m
             WHERE m.id = coalesce((SELECT response_message_id FROM {s}.agentpg_iterations WHERE id = $2),
                                   (SELECT id FROM {m} WHERE run_id = $1 AND role = 'assistant' ORDER BY seq DESC LIMIT 1))
            """;
    }

    public string Insert { get; }

    public string InsertOnce { get; }

    public string BySession { get; }

    public string ByIds { get; }

    public string RootContext { get; }

    public string RunContext { get; }

    public string ContextsForClaimed { get; }

    public string FinalOfRun { get; }

    /// <summary>Adds <see cref="IndexPlans"/>.</summary>
    public static void AddIndexPlans(NpgsqlBatch batch) => batch.Append(IndexPlans);

    /// <summary>Adds <see cref="Insert"/>, or <see cref="InsertOnce"/> for a step that cannot run twice. <paramref name="contentJson"/>
    /// is the JSON array of the message's blocks (<see cref="MessageContent"/>).</summary>
    public void AddInsert(NpgsqlBatch batch, Guid messageId, Run run, MessageRole role, string usageJson, string contentJson, bool once)
        => batch.Append(once ? InsertOnce : Insert, P.Uuid(messageId), P.Uuid(run.SessionId), P.Uuid(run.Id), P.Text(role.ToDb()), P.Jsonb(usageJson),
            P.Jsonb(contentJson));

    /// <summary>Adds the conversation the run's requests are built from: <see cref="RootContext"/> for a root run,
    /// <see cref="RunContext"/> for a child run. Read it with <see cref="ReadMessagesAsync"/>.</summary>
    public void AddContext(NpgsqlBatch batch, Run run)
        => batch.Append(run.Depth == 0 ? RootContext : RunContext, P.Uuid(run.Depth == 0 ? run.SessionId : run.Id));

    /// <summary>Adds <see cref="ContextsForClaimed"/> after a claim in its batch; read it with <see cref="ReadContextsForClaimedAsync"/>.</summary>
    public void AddContextsForClaimed(NpgsqlBatch batch) => batch.Append(ContextsForClaimed);

    /// <summary>Reads message rows.</summary>
    public static async Task<List<Message>> ReadMessagesAsync(NpgsqlDataReader r, CancellationToken cancellationToken)
    {
        var messages = new List<Message>();
        while (await r.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            messages.Add(ReadMessage(r));
        }

        return messages;
    }

    /// <summary>Reads <see cref="ContextsForClaimed"/>: each claimed run's conversation (a run without messages is absent).</summary>
    public static async Task<Dictionary<Guid, List<Message>>> ReadContextsForClaimedAsync(NpgsqlDataReader r, CancellationToken cancellationToken)
    {
        var contexts = new Dictionary<Guid, List<Message>>();
        while (await r.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var of = r.GetGuid(ClaimedRunColumn);
            if (!contexts.TryGetValue(of, out var messages))
            {
                contexts[of] = messages = [];
            }

            messages.Add(ReadMessage(r));
        }

        return contexts;
    }

    // Where ContextsForClaimed puts the claimed run's id: after the message columns.
    private static readonly int ClaimedRunColumn = Columns.Split(", ").Length;

    private static Message ReadMessage(NpgsqlDataReader r) => new()
    {
        Id = r.GetGuid(0),
        SessionId = r.GetGuid(1),
        RunId = r.IsDBNull(2) ? null : r.GetGuid(2),
        Role = DbEnums.ParseMessageRole(r.GetString(3)),
        Usage = ReadUsage(r.GetString(4)),
        IsPreserved = r.GetBoolean(5),
        IsSummary = r.GetBoolean(6),
        Metadata = JsonMapping.FromJsonObject(r.GetString(7)),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(8),
        Content = MessageContent.Read(r.GetString(9)),
    };

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
