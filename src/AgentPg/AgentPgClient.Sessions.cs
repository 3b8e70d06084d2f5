using System.Data.Common;
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
