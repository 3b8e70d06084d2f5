using AgentPg.Memory;
using Npgsql;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Lists the files of a memory store (<see cref="AgentMemory"/>) with their content, by path: what the agent
    /// remembers there.</summary>
    /// <param name="store">The store, for example <see cref="MemoryStoreId.ForAgent(Guid)"/>.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The files, by path (ordinal); empty for a store that was never written.</returns>
    /// <remarks>Reads what is committed, without waiting for a command in progress.</remarks>
    /// <exception cref="ArgumentNullException"><paramref name="store"/> is null.</exception>
    public async Task<IReadOnlyList<MemoryFile>> ListMemoryFilesAsync(MemoryStoreId store, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        await _schemaCheck.EnsureAsync("ListMemoryFiles", null, cancellationToken).ConfigureAwait(false);
        return await _sql.Memory.FilesOfAsync(_dataSource, store, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads one file of a memory store.</summary>
    /// <param name="store">The store.</param>
    /// <param name="path">The file's path, under <c>/memories</c> (for example <c>/memories/notes.md</c>).</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The file, or <see langword="null"/> when the store has no file at that path.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="store"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is not a path under <c>/memories</c>.</exception>
    public async Task<MemoryFile?> ReadMemoryFileAsync(MemoryStoreId store, string path, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        var normalized = MemoryPaths.NormalizeArgument(path, nameof(path));
        await _schemaCheck.EnsureAsync("ReadMemoryFile", null, cancellationToken).ConfigureAwait(false);
        return await _sql.Memory.FileOfAsync(_dataSource, store, normalized, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Creates a file of a memory store, or replaces its content: seeds what the agent knows.</summary>
    /// <param name="store">The store.</param>
    /// <param name="path">The file's path, under <c>/memories</c> (for example <c>/memories/customer.md</c>); directories are
    /// implied by the path.</param>
    /// <param name="content">The content.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>A task that completes when the file is written.</returns>
    /// <remarks>Waits for a memory command of the same store that is in progress, and commits before the next one reads the
    /// store. <see cref="AgentMemory.MaxFileBytes"/> and <see cref="AgentMemory.MaxStoreBytes"/> limit Claude's commands, not
    /// this method.</remarks>
    /// <exception cref="ArgumentNullException"><paramref name="store"/> or <paramref name="content"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is not a file path under <c>/memories</c>, is a directory of
    /// the store, or is under one of its files; or <paramref name="content"/> holds U+0000.</exception>
    /// <exception cref="AgentPgException">The store's agent (<see cref="AgentPgErrorCode.AgentNotFound"/>) or session
    /// (<see cref="AgentPgErrorCode.SessionNotFound"/>) does not exist.</exception>
    public async Task WriteMemoryFileAsync(MemoryStoreId store, string path, string content, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        ArgumentNullException.ThrowIfNull(content);
        var normalized = MemoryPaths.NormalizeArgument(path, nameof(path));
        if (normalized == MemoryPaths.Root)
        {
            throw new ArgumentException("The path is the memory directory itself; name a file under it, for example /memories/notes.md.", nameof(path));
        }

        Internal.Nul.Reject(content, nameof(content), "content");
        await InMemoryStoreAsync("WriteMemoryFile", store, async (transaction, storeId, files) =>
        {
            if (files.Any(f => f.Path.StartsWith(normalized + "/", StringComparison.Ordinal)))
            {
                throw new ArgumentException($"{normalized} is a directory of the memory store (it holds files); write a file under it.", nameof(path));
            }

            if (files.FirstOrDefault(f => normalized.StartsWith(f.Path + "/", StringComparison.Ordinal)) is { } ancestor)
            {
                throw new ArgumentException($"{ancestor.Path} is a file of the memory store, so {normalized} cannot be under it.", nameof(path));
            }

            await _sql.Memory.WriteAsync(transaction, storeId, normalized, content, cancellationToken).ConfigureAwait(false);
            return 0;
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes a file of a memory store, or a directory with every file under it.</summary>
    /// <param name="store">The store.</param>
    /// <param name="path">The file or directory, under <c>/memories</c>; <c>/memories</c> itself deletes every file (as
    /// <see cref="ClearMemoryAsync"/>).</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The number of files deleted (0 when there was nothing at that path).</returns>
    /// <exception cref="ArgumentNullException"><paramref name="store"/> is null.</exception>
    /// <exception cref="ArgumentException"><paramref name="path"/> is not a path under <c>/memories</c>.</exception>
    public async Task<int> DeleteMemoryFileAsync(MemoryStoreId store, string path, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(store);
        var normalized = MemoryPaths.NormalizeArgument(path, nameof(path));
        return await InMemoryStoreAsync("DeleteMemoryFile", store,
            (transaction, storeId, _) => _sql.Memory.DeleteAsync(transaction, storeId, normalized, cancellationToken), cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Deletes every file of a memory store: the agent starts over with an empty memory there.</summary>
    /// <param name="store">The store.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The number of files deleted.</returns>
    /// <exception cref="ArgumentNullException"><paramref name="store"/> is null.</exception>
    public Task<int> ClearMemoryAsync(MemoryStoreId store, CancellationToken cancellationToken = default)
        => DeleteMemoryFileAsync(store, MemoryPaths.Root, cancellationToken);

    /// <summary>Runs <paramref name="work"/> in a transaction that holds the store's lock (creating the store when needed), given
    /// the store's files as they are.</summary>
    private async Task<T> InMemoryStoreAsync<T>(string operation, MemoryStoreId store,
        Func<NpgsqlTransaction, Guid, List<MemoryFile>, Task<T>> work, CancellationToken cancellationToken)
    {
        await _schemaCheck.EnsureAsync(operation, null, cancellationToken).ConfigureAwait(false);
        var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            await using (transaction.ConfigureAwait(false))
            {
                Guid storeId;
                try
                {
                    storeId = await _sql.Memory.LockAsync(transaction, store, cancellationToken).ConfigureAwait(false);
                }
                catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.ForeignKeyViolation)
                {
                    throw ex.ConstraintName?.Contains("session", StringComparison.Ordinal) == true
                        ? SessionNotFound(store.SessionId!.Value, operation)
                        : AgentNotFound(store.AgentId, operation);
                }

                var files = await _sql.Memory.FilesAsync(transaction, storeId, cancellationToken).ConfigureAwait(false);
                var result = await work(transaction, storeId, files).ConfigureAwait(false);
                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                return result;
            }
        }
    }
}
