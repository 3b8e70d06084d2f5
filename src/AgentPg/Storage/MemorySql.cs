using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_memory_stores and agentpg_memory_files (Claude's memory tool, <see cref="AgentMemory"/>).</summary>
/// <remarks>Every write first runs <see cref="Lock"/> in its transaction: it finds or creates the store's row and holds its lock
/// until the commit, so the writes of one store (Claude's commands from any number of runs, the application's) happen one at a
/// time, each reading what the one before it committed: no update is lost and the size limit holds.</remarks>
internal sealed class MemorySql
{
    // The store of (agent, session, metadata key, metadata value), compared NULL-safely.
    private const string StoreMatch =
        "s.agent_id = $1 AND s.session_id IS NOT DISTINCT FROM $2 AND s.metadata_key IS NOT DISTINCT FROM $3 AND s.metadata_value IS NOT DISTINCT FROM $4";

    public MemorySql(SchemaName s)
    {
        var stores = $"{s}.agentpg_memory_stores";
        var files = $"{s}.agentpg_memory_files";
        // $1 agent, $2 session: the agent's memory setting, and the session's metadata value under its metadata key (->>: a string
        // as is, any other JSON value as its text). No row when the agent is gone.
        Scope = $"""
            SELECT a.memory::text, (SELECT se.metadata ->> (a.memory ->> 'metadata_key') FROM {s}.agentpg_sessions se WHERE se.id = $2)
              FROM {s}.agentpg_agents a
             WHERE a.id = $1
            """;
        // $1 agent, $2 session, $3 metadata key, $4 metadata value: the store's id, its row locked until the commit. The DO UPDATE
        // (rather than DO NOTHING) is what takes the lock when the row exists.
        Lock = $"""
            INSERT INTO {stores} AS s (agent_id, session_id, metadata_key, metadata_value) VALUES ($1, $2, $3, $4)
            ON CONFLICT ON CONSTRAINT memory_store_unique DO UPDATE SET updated_at = now()
            RETURNING s.id
            """;
        // $1 store: its files, by path.
        Files = $"SELECT path, content, octet_length(content), created_at, updated_at FROM {files} WHERE store_id = $1 ORDER BY path COLLATE \"C\"";
        // $1..$4 as Lock: the files of the store, without creating or locking it (reads).
        FilesOf = $"""
            SELECT f.path, f.content, octet_length(f.content), f.created_at, f.updated_at
              FROM {stores} s JOIN {files} f ON f.store_id = s.id
             WHERE {StoreMatch}
             ORDER BY f.path COLLATE "C"
            """;
        // $1..$4 as Lock, $5 path.
        FileOf = $"""
            SELECT f.path, f.content, octet_length(f.content), f.created_at, f.updated_at
              FROM {stores} s JOIN {files} f ON f.store_id = s.id
             WHERE {StoreMatch} AND f.path = $5
            """;
        // $1 store, $2 path, $3 content: creates the file or replaces its content.
        Write = $"""
            INSERT INTO {files} (store_id, path, content) VALUES ($1, $2, $3)
            ON CONFLICT (store_id, path) DO UPDATE SET content = EXCLUDED.content, updated_at = now()
            """;
        // $1 store, $2 path, $3 path + '/': the file $2, or every file under the directory $2.
        Delete = $"DELETE FROM {files} WHERE store_id = $1 AND (path = $2 OR starts_with(path, $3))";
        // $1 store, $2 old path, $3 old path + '/', $4 new path: moves the file, or every file under the directory, keeping the
        // rest of each path.
        Rename = $"""
            UPDATE {files}
               SET path = $4 || substr(path, char_length($2) + 1), updated_at = now()
             WHERE store_id = $1 AND (path = $2 OR starts_with(path, $3))
            """;
    }

    public string Scope { get; }

    public string Lock { get; }

    public string Files { get; }

    public string FilesOf { get; }

    public string FileOf { get; }

    public string Write { get; }

    public string Delete { get; }

    public string Rename { get; }

    /// <summary>The agent's memory setting (null: the agent has none, or is gone) and the session's value under its metadata key.</summary>
    public async Task<(AgentMemory? Memory, string? MetadataValue)> ScopeAsync(NpgsqlTransaction transaction, Guid agentId, Guid sessionId,
        CancellationToken cancellationToken)
    {
        var command = new NpgsqlCommand(Scope, transaction.Connection, transaction);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(P.Uuid(agentId));
            command.Parameters.Add(P.Uuid(sessionId));
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false) || reader.IsDBNull(0))
                {
                    return (null, null);
                }

                return (AgentMemory.FromJson(reader.GetString(0)), reader.IsDBNull(1) ? null : reader.GetString(1));
            }
        }
    }

    /// <summary>Runs <see cref="Lock"/>: the store's id, its row locked until <paramref name="transaction"/> ends.</summary>
    public async Task<Guid> LockAsync(NpgsqlTransaction transaction, MemoryStoreId store, CancellationToken cancellationToken)
    {
        var command = new NpgsqlCommand(Lock, transaction.Connection, transaction);
        await using (command.ConfigureAwait(false))
        {
            AddStore(command, store);
            return (Guid)(await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false))!;
        }
    }

    /// <summary>The files of a locked store (<see cref="Files"/>).</summary>
    public async Task<List<MemoryFile>> FilesAsync(NpgsqlTransaction transaction, Guid storeId, CancellationToken cancellationToken)
    {
        var command = new NpgsqlCommand(Files, transaction.Connection, transaction);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(P.Uuid(storeId));
            return await command.QueryListAsync(ReadFile, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The files of a store, read without a lock (<see cref="FilesOf"/>).</summary>
    public async Task<List<MemoryFile>> FilesOfAsync(NpgsqlDataSource dataSource, MemoryStoreId store, CancellationToken cancellationToken)
    {
        var command = dataSource.CreateCommand(FilesOf);
        await using (command.ConfigureAwait(false))
        {
            AddStore(command, store);
            return await command.QueryListAsync(ReadFile, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>One file of a store, read without a lock (<see cref="FileOf"/>); null when there is none.</summary>
    public async Task<MemoryFile?> FileOfAsync(NpgsqlDataSource dataSource, MemoryStoreId store, string path, CancellationToken cancellationToken)
    {
        var command = dataSource.CreateCommand(FileOf);
        await using (command.ConfigureAwait(false))
        {
            AddStore(command, store);
            command.Parameters.Add(P.Text(path));
            return await command.QueryFirstOrDefaultAsync(ReadFile, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Runs <see cref="Write"/> in the store's transaction.</summary>
    public Task WriteAsync(NpgsqlTransaction transaction, Guid storeId, string path, string content, CancellationToken cancellationToken)
        => ExecuteAsync(transaction, Write, cancellationToken, P.Uuid(storeId), P.Text(path), P.Text(content));

    /// <summary>Runs <see cref="Delete"/>: the number of files deleted.</summary>
    public Task<int> DeleteAsync(NpgsqlTransaction transaction, Guid storeId, string path, CancellationToken cancellationToken)
        => ExecuteAsync(transaction, Delete, cancellationToken, P.Uuid(storeId), P.Text(path), P.Text(path + "/"));

    /// <summary>Runs <see cref="Rename"/>: the number of files moved.</summary>
    public Task<int> RenameAsync(NpgsqlTransaction transaction, Guid storeId, string oldPath, string newPath, CancellationToken cancellationToken)
        => ExecuteAsync(transaction, Rename, cancellationToken, P.Uuid(storeId), P.Text(oldPath), P.Text(oldPath + "/"), P.Text(newPath));

    private static async Task<int> ExecuteAsync(NpgsqlTransaction transaction, string sql, CancellationToken cancellationToken, params NpgsqlParameter[] parameters)
    {
        var command = new NpgsqlCommand(sql, transaction.Connection, transaction);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.AddRange(parameters);
            return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static void AddStore(NpgsqlCommand command, MemoryStoreId store)
    {
        command.Parameters.Add(P.Uuid(store.AgentId));
        command.Parameters.Add(P.Uuid(store.SessionId));
        command.Parameters.Add(P.Text(store.MetadataKey));
        command.Parameters.Add(P.Text(store.MetadataValue));
    }

    private static MemoryFile ReadFile(NpgsqlDataReader r) => new()
    {
        Path = r.GetString(0),
        Content = r.GetString(1),
        SizeBytes = r.GetInt32(2),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(3),
        UpdatedAt = r.GetFieldValue<DateTimeOffset>(4),
    };
}
