using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_sessions.</summary>
internal sealed class SessionSql
{
    private const string Columns = "id, parent_session_id, depth, metadata::text, compaction_count, created_at, updated_at";

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

    public static Session Read(NpgsqlDataReader r) => new()
    {
        Id = r.GetGuid(0),
        ParentSessionId = r.IsDBNull(1) ? null : r.GetGuid(1),
        Depth = r.GetInt32(2),
        Metadata = JsonMapping.FromJsonObject(r.GetString(3)),
        CompactionCount = r.GetInt32(4),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(5),
        UpdatedAt = r.GetFieldValue<DateTimeOffset>(6),
    };
}
