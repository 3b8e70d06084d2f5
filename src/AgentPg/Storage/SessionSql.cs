using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_sessions.</summary>
internal sealed class SessionSql
{
    private const string Columns = "id, parent_session_id, depth, metadata::text, compaction_count, created_at, updated_at";

    // Positions in Columns.
    private const int IdColumn = 0, ParentColumn = 1, DepthColumn = 2, MetadataColumn = 3, CompactionCountColumn = 4, CreatedAtColumn = 5,
        UpdatedAtColumn = 6;

    public SessionSql(SchemaName s)
    {
        var t = $"{s}.agentpg_sessions";
        Insert = $"INSERT INTO {t} (metadata) VALUES ($1) RETURNING id";
        // Depth derives from the parent in the same statement; no row comes back when the parent does not exist.
        InsertChild = $"""
            INSERT INTO {t} (parent_session_id, depth, metadata)
            SELECT p.id, p.depth + 1, $2 FROM {t} p WHERE p.id = $1
            RETURNING id
            """;
        Get = $"SELECT {Columns} FROM {t} WHERE id = $1";
        // Session $1 and its descendants (child sessions, any depth).
        var tree = $"""
            WITH RECURSIVE tree AS (
                SELECT id FROM {t} WHERE id = $1
                UNION ALL
                SELECT c.id FROM {t} c JOIN tree ON c.parent_session_id = tree.id)
            """;
        // Locks the sessions to delete: no run can be created in them any more (its foreign key check waits for the lock),
        // and one whose creation had the lock first has committed (or rolled back) before the next statement reads.
        LockTree = $"{tree} SELECT id FROM {t} WHERE id IN (SELECT id FROM tree) ORDER BY id FOR UPDATE";
        // A statement of its own, so that (READ COMMITTED) it sees the runs committed while the lock was awaited. Deletes the
        // session when none of the sessions has a run that is not finished (agentpg_run_queue: the active runs); everything
        // else goes with it (ON DELETE CASCADE). In REPEATABLE READ or SERIALIZABLE it reads the transaction's snapshot, which
        // may predate a run committed since; the cascade then meets rows that snapshot cannot see, and PostgreSQL's foreign
        // key actions (which read the latest rows and cross-check them against the snapshot) fail with a serialization
        // failure (40001) instead of deleting them: nothing is lost. The isolation level comes back for the busy message.
        // A scope (the admin UI's tenant and agent filters; $2 metadata every session must contain, $3 the agents whose runs
        // it may hold, NULL for none) is checked here too, under the lock: no session can join the tree or change in between.
        DeleteIfIdle = $"""
            {tree},
            active AS (SELECT q.run_id FROM {s}.agentpg_run_queue q WHERE q.session_id IN (SELECT id FROM tree)),
            outside_sessions AS (SELECT 1 FROM {t} o WHERE $2::jsonb IS NOT NULL AND o.id IN (SELECT id FROM tree) AND NOT o.metadata @> $2),
            outside_runs AS (SELECT 1 FROM {s}.agentpg_runs r
                              WHERE $3::uuid[] IS NOT NULL AND r.session_id IN (SELECT id FROM tree) AND r.agent_id <> ALL ($3)),
            deleted AS (DELETE FROM {t} WHERE id = $1 AND NOT EXISTS (SELECT 1 FROM active)
                           AND NOT EXISTS (SELECT 1 FROM outside_sessions) AND NOT EXISTS (SELECT 1 FROM outside_runs) RETURNING id)
            SELECT EXISTS (SELECT 1 FROM tree), (SELECT count(*) FROM active)::int,
                   ARRAY(SELECT run_id FROM active ORDER BY run_id LIMIT {MaxActiveRunsReported}), EXISTS (SELECT 1 FROM deleted),
                   current_setting('transaction_isolation'), EXISTS (SELECT 1 FROM outside_sessions), EXISTS (SELECT 1 FROM outside_runs)
            """;
    }

    /// <summary>How many of a busy session's active runs a refused deletion names.</summary>
    public const int MaxActiveRunsReported = 10;

    public string Insert { get; }

    public string InsertChild { get; }

    public string Get { get; }

    public string LockTree { get; }

    public string DeleteIfIdle { get; }

    /// <summary>Deletes session <paramref name="id"/> and its child sessions unless one of them has a run that is not finished
    /// or is outside the scope (<see cref="LockTree"/>, then <see cref="DeleteIfIdle"/>, in one transaction: the caller's, or
    /// the batch's own).</summary>
    public async Task<SessionDeletionResult> DeleteAsync(NpgsqlDataSource dataSource, NpgsqlTransaction? transaction, Guid id,
        string? scopeMetadataJson, Guid[]? scopeAgentIds, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            batch.Append(LockTree, P.Uuid(id));
            batch.Append(DeleteIfIdle, P.Uuid(id), P.Jsonb(scopeMetadataJson), P.UuidArrayOrNull(scopeAgentIds));
            var reader = transaction is null
                ? await batch.ExecuteReaderAsync(dataSource, prepare: false, cancellationToken).ConfigureAwait(false)
                : await batch.ExecuteReaderAsync(transaction, cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                return new SessionDeletionResult(reader.GetBoolean(0), reader.GetInt32(1), reader.GetFieldValue<Guid[]>(2), reader.GetBoolean(3),
                    reader.GetString(4), reader.GetBoolean(5), reader.GetBoolean(6));
            }
        }
    }

    /// <summary>The session, or null when it does not exist.</summary>
    public Task<Session?> GetAsync(NpgsqlDataSource dataSource, Guid id, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, Get, P.Uuid(id)).QueryFirstOrDefaultAsync(Read, cancellationToken);

    /// <summary>Adds <see cref="Get"/> (one <see cref="Read"/> row, or none).</summary>
    public void AddGet(NpgsqlBatch batch, Guid id) => batch.Append(Get, P.Uuid(id));

    /// <summary>Inserts a session (a child of <paramref name="parentId"/> when set) and returns its id, or null when the parent
    /// does not exist.</summary>
    public async Task<Guid?> InsertAsync(NpgsqlDataSource dataSource, NpgsqlTransaction? transaction, Guid? parentId, string metadataJson,
        CancellationToken cancellationToken)
    {
        var command = parentId is { } parent
            ? Db.Command(dataSource, transaction, InsertChild, P.Uuid(parent), P.Jsonb(metadataJson))
            : Db.Command(dataSource, transaction, Insert, P.Jsonb(metadataJson));
        return await command.ScalarAsync(cancellationToken).ConfigureAwait(false) as Guid?;
    }

    public static Session Read(NpgsqlDataReader r) => new()
    {
        Id = r.GetGuid(IdColumn),
        ParentSessionId = r.IsDBNull(ParentColumn) ? null : r.GetGuid(ParentColumn),
        Depth = r.GetInt32(DepthColumn),
        Metadata = JsonMapping.FromJsonObject(r.GetString(MetadataColumn)),
        CompactionCount = r.GetInt32(CompactionCountColumn),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(CreatedAtColumn),
        UpdatedAt = r.GetFieldValue<DateTimeOffset>(UpdatedAtColumn),
    };
}

/// <summary>What <see cref="SessionSql.DeleteAsync"/> found: whether the session exists, its tree's active runs (a count and
/// the first ids), whether it was deleted, the transaction's isolation level, and whether a session of the tree lacks the
/// scope's metadata or holds runs of an agent outside it.</summary>
internal readonly record struct SessionDeletionResult(bool Found, int ActiveRuns, Guid[] SomeActiveRuns, bool Deleted, string Isolation,
    bool OutsideMetadata, bool OutsideAgents);
