using System.Data.Common;
using AgentPg.Diagnostics;
using AgentPg.Internal;
using Npgsql;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Creates a session.</summary>
    /// <param name="parentSessionId">A parent session, or <see langword="null"/> for a top-level session.</param>
    /// <param name="metadata">Free-form metadata, for example a tenant or user id.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The session id.</returns>
    /// <exception cref="AgentPgException">The parent session does not exist (<see cref="AgentPgErrorCode.SessionNotFound"/>).</exception>
    public Task<Guid> NewSessionAsync(Guid? parentSessionId = null, IReadOnlyDictionary<string, object?>? metadata = null, CancellationToken cancellationToken = default)
        => InsertSessionAsync(null, parentSessionId, metadata, cancellationToken);

    /// <summary>Creates a session inside the caller's transaction.</summary>
    /// <param name="transaction">An open transaction on an <see cref="NpgsqlConnection"/> to the client's database (plain Npgsql,
    /// Dapper, or EF Core's <c>Database.CurrentTransaction.GetDbTransaction()</c>).</param>
    /// <param name="parentSessionId">A parent session, or <see langword="null"/> for a top-level session.</param>
    /// <param name="metadata">Free-form metadata.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The session id.</returns>
    /// <remarks>The session exists only if and when the transaction commits; other connections cannot see it before.</remarks>
    /// <exception cref="ArgumentException">The transaction is not an open Npgsql transaction on the client's database.</exception>
    /// <exception cref="AgentPgException">The parent session does not exist (<see cref="AgentPgErrorCode.SessionNotFound"/>).</exception>
    public Task<Guid> NewSessionAsync(DbTransaction transaction, Guid? parentSessionId = null, IReadOnlyDictionary<string, object?>? metadata = null, CancellationToken cancellationToken = default)
        => InsertSessionAsync(TransactionGuard.Require(transaction, _dataSource, nameof(transaction)), parentSessionId, metadata, cancellationToken);

    /// <summary>Gets a session.</summary>
    /// <param name="id">The session.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The session.</returns>
    /// <exception cref="AgentPgException">No session has that id (<see cref="AgentPgErrorCode.SessionNotFound"/>).</exception>
    public async Task<Session> GetSessionAsync(Guid id, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetSession", null, cancellationToken).ConfigureAwait(false);
        return await _sql.Sessions.GetAsync(_dataSource, id, cancellationToken).ConfigureAwait(false) ?? throw SessionNotFound(id, "GetSession");
    }

    /// <summary>Deletes a session with everything in it — its runs (delegated child runs too), messages, iterations, tool
    /// executions and approvals, compaction events and live events — and its child sessions likewise.</summary>
    /// <param name="id">The session.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>A task that completes when the session is deleted.</returns>
    /// <remarks>For erasing a user's data, or a retention job (see the operations guide). A session with a run that is not
    /// finished is refused: cancel its runs (<see cref="CancelRunAsync"/>) first. While the deletion runs, runs cannot be
    /// created in the session (their creation waits, then finds no session); one created just before is seen and refuses the
    /// deletion. Sessions are not per tenant here: check that the session belongs to the caller's tenant first (for example
    /// with <see cref="ListSessionsAsync"/> and <see cref="SessionQuery.Ids"/> and <see cref="SessionQuery.Metadata"/>). Its child
    /// sessions go with it whatever their own metadata.</remarks>
    /// <exception cref="AgentPgException">The session does not exist (<see cref="AgentPgErrorCode.SessionNotFound"/>), or it or one
    /// of its child sessions has a run that is not finished (<see cref="AgentPgErrorCode.SessionBusy"/>; nothing is deleted).</exception>
    public Task DeleteSessionAsync(Guid id, CancellationToken cancellationToken = default)
        => DeleteSessionCoreAsync(null, id, cancellationToken);

    /// <summary>Deletes a session with everything in it, and its child sessions, inside the caller's transaction.</summary>
    /// <param name="transaction">An open transaction on an <see cref="NpgsqlConnection"/> to the client's database.</param>
    /// <param name="id">The session.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>A task that completes when the deletion is written in the transaction; a rollback keeps the session.</returns>
    /// <remarks>Deletes the agent data of a user together with the application's own (for example an account's erasure). The
    /// sessions stay locked until the transaction ends: runs created in them meanwhile wait. In a READ COMMITTED transaction
    /// (PostgreSQL's default) the check for active runs sees the runs committed while it waited for the lock. In REPEATABLE
    /// READ or SERIALIZABLE it sees the sessions as of the transaction's snapshot: when anything was written in them after
    /// the snapshot (a run created or finished, a message), the deletion fails with PostgreSQL's serialization failure and
    /// deletes nothing — roll back and run the transaction again, as for any serialization failure at those levels; and a
    /// <see cref="AgentPgErrorCode.SessionBusy"/> may name a run that finished after the snapshot, so retry in a new
    /// transaction. See <see cref="DeleteSessionAsync(Guid, CancellationToken)"/>.</remarks>
    /// <exception cref="ArgumentException">The transaction is not an open Npgsql transaction on the client's database.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.SessionNotFound"/> or <see cref="AgentPgErrorCode.SessionBusy"/>.</exception>
    /// <exception cref="PostgresException">In a REPEATABLE READ or SERIALIZABLE transaction, the sessions changed after its
    /// snapshot (<see cref="PostgresException.SqlState"/> 40001, <see cref="NpgsqlException.IsTransient"/>): retry the
    /// transaction.</exception>
    public Task DeleteSessionAsync(DbTransaction transaction, Guid id, CancellationToken cancellationToken = default)
        => DeleteSessionCoreAsync(TransactionGuard.Require(transaction, _dataSource, nameof(transaction)), id, cancellationToken);

    /// <summary>The admin UI's deletion: <see cref="DeleteSessionAsync(Guid, CancellationToken)"/> of a session whose whole tree is in
    /// the request's scope, checked under the lock in the statement that deletes, so no session can join the tree or change
    /// in between. Out of scope comes first, so a busy message never names another tenant's runs.</summary>
    /// <param name="id">The session.</param>
    /// <param name="metadata">What every session of the tree must contain (the tenant filter), or <see langword="null"/>.</param>
    /// <param name="agentIds">The agents whose runs the tree may hold (the agent filter), or <see langword="null"/> for any.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns><see cref="SessionDeletionScope.Deleted"/>, or why nothing was deleted.</returns>
    internal async Task<SessionDeletionScope> DeleteSessionInScopeAsync(Guid id, IReadOnlyDictionary<string, object?>? metadata,
        IReadOnlyList<Guid>? agentIds, CancellationToken cancellationToken)
    {
        var json = metadata is null ? null : JsonMapping.ToJsonObject(metadata, nameof(metadata));
        return await DeleteSessionCoreAsync(null, id, json, agentIds?.ToArray(), cancellationToken).ConfigureAwait(false);
    }

    private Task DeleteSessionCoreAsync(NpgsqlTransaction? transaction, Guid id, CancellationToken cancellationToken)
        => DeleteSessionCoreAsync(transaction, id, null, null, cancellationToken);

    private async Task<SessionDeletionScope> DeleteSessionCoreAsync(NpgsqlTransaction? transaction, Guid id, string? scopeMetadataJson,
        Guid[]? scopeAgentIds, CancellationToken cancellationToken)
    {
        await _schemaCheck.EnsureAsync("DeleteSession", transaction, cancellationToken).ConfigureAwait(false);
        var (found, activeRuns, someActive, deleted, isolation, outsideMetadata, outsideAgents) =
            await _sql.Sessions.DeleteAsync(_dataSource, transaction, id, scopeMetadataJson, scopeAgentIds, cancellationToken).ConfigureAwait(false);
        if (!found)
        {
            throw SessionNotFound(id, "DeleteSession");
        }

        if (outsideMetadata || outsideAgents)
        {
            return outsideMetadata ? SessionDeletionScope.SessionOutside : SessionDeletionScope.AgentOutside;
        }

        if (!deleted)
        {
            var named = string.Join(", ", someActive) + (activeRuns > someActive.Length ? $" and {activeRuns - someActive.Length} more" : "");
            throw new AgentPgException(AgentPgErrorCode.SessionBusy, "DeleteSession",
                $"Session {id} cannot be deleted: it or one of its child sessions has {activeRuns} run{(activeRuns == 1 ? "" : "s")} " +
                $"that {(activeRuns == 1 ? "is" : "are")} not finished ({named}). Cancel {(activeRuns == 1 ? "it" : "them")} with CancelRunAsync first; nothing was deleted." +
                // REPEATABLE READ and SERIALIZABLE see the runs as of the transaction's snapshot: a run finished since still
                // counts, and a retry in the same transaction sees it again.
                (isolation == "read committed" ? "" : $" Your transaction is {isolation.ToUpperInvariant()}: it sees the runs as of its snapshot, so retry in a new transaction."))
            {
                SessionId = id,
                Context = new Dictionary<string, object?> { ["session_id"] = id, ["active_runs"] = activeRuns, ["run_ids"] = someActive },
            };
        }

        Log.SessionDeleted(_logger, id);
        return SessionDeletionScope.Deleted;
    }

    private async Task<Guid> InsertSessionAsync(NpgsqlTransaction? transaction, Guid? parentSessionId, IReadOnlyDictionary<string, object?>? metadata, CancellationToken cancellationToken)
    {
        var json = JsonMapping.ToJsonObject(metadata, nameof(metadata));
        await _schemaCheck.EnsureAsync("NewSession", transaction, cancellationToken).ConfigureAwait(false);
        return await _sql.Sessions.InsertAsync(_dataSource, transaction, parentSessionId, json, cancellationToken).ConfigureAwait(false)
               ?? throw SessionNotFound(parentSessionId!.Value, "NewSession", "Parent session");
    }

    private static AgentPgException SessionNotFound(Guid id, string operation, string what = "Session")
        => new(AgentPgErrorCode.SessionNotFound, operation, $"{what} {id} does not exist.")
        {
            SessionId = id,
        };
}

/// <summary>What <see cref="AgentPgClient.DeleteSessionInScopeAsync"/> did.</summary>
internal enum SessionDeletionScope
{
    /// <summary>The session and its tree were deleted.</summary>
    Deleted,

    /// <summary>Nothing was deleted: a session of the tree lacks the scope's metadata (another tenant's).</summary>
    SessionOutside,

    /// <summary>Nothing was deleted: a session of the tree holds runs of an agent outside the scope.</summary>
    AgentOutside,
}
