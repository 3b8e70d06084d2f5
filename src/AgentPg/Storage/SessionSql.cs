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
    }

    public string Insert { get; }

    public string InsertChild { get; }

    public string Get { get; }

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
