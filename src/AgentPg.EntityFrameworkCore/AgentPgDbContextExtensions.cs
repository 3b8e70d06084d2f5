using System.Data.Common;
using System.Text.Json;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Storage;

namespace AgentPg;

/// <summary>Creates AgentPg sessions and runs, and decides tool approvals, inside a <see cref="DbContext"/>'s current
/// transaction, so the application's rows and the agent work commit or roll back together.</summary>
/// <remarks>
/// <para>Each method enlists in <c>db.Database.CurrentTransaction</c>: begin it with
/// <c>await db.Database.BeginTransactionAsync()</c>, call <c>SaveChangesAsync</c> and these methods in any order, then commit.
/// Work created in an uncommitted transaction is invisible to workers until the commit and disappears on rollback.</para>
/// <para>The context must use Npgsql (<c>UseNpgsql</c>) on the same database as the client.</para>
/// <para>A context whose execution strategy retries (<c>EnableRetryOnFailure</c>) refuses <c>SaveChangesAsync</c> in a
/// transaction begun outside the strategy, the application's and a tool's alike: run the transaction's work inside
/// <c>db.Database.CreateExecutionStrategy().ExecuteAsync(…)</c> (the package's README shows both).</para>
/// </remarks>
public static class AgentPgDbContextExtensions
{
    /// <summary>Creates a session in the context's current transaction.</summary>
    /// <param name="client">The AgentPg client.</param>
    /// <param name="db">A context with a current transaction.</param>
    /// <param name="parentSessionId">The parent session, if any.</param>
    /// <param name="metadata">Metadata stored with the session.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The new session's id.</returns>
    /// <exception cref="InvalidOperationException">The context has no current transaction.</exception>
    /// <exception cref="ArgumentException">The context's transaction is not an Npgsql transaction on the client's database.</exception>
    public static Task<Guid> NewSessionAsync(this AgentPgClient client, DbContext db, Guid? parentSessionId = null,
        IReadOnlyDictionary<string, object?>? metadata = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.NewSessionAsync(CurrentTransaction(db, nameof(NewSessionAsync)), parentSessionId, metadata, cancellationToken);
    }

    /// <summary>Deletes a session with everything in it, and its child sessions, in the context's current transaction (for
    /// example with the application's own data of a user whose account is erased).</summary>
    /// <param name="client">The AgentPg client.</param>
    /// <param name="db">A context with a current transaction.</param>
    /// <param name="sessionId">The session.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>A task that completes when the deletion is written in the transaction; a rollback keeps the session.</returns>
    /// <remarks>In a REPEATABLE READ or SERIALIZABLE transaction, a session changed after the transaction's snapshot fails
    /// the deletion with PostgreSQL's serialization failure, which an execution strategy retrying transient errors runs
    /// again (see <see cref="AgentPgClient.DeleteSessionAsync(System.Data.Common.DbTransaction, Guid, CancellationToken)"/>).</remarks>
    /// <exception cref="InvalidOperationException">The context has no current transaction.</exception>
    /// <exception cref="ArgumentException">The context's transaction is not an Npgsql transaction on the client's database.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.SessionNotFound"/>, or <see cref="AgentPgErrorCode.SessionBusy"/>
    /// when a run in it is not finished (see <see cref="AgentPgClient.DeleteSessionAsync(Guid, CancellationToken)"/>).</exception>
    public static Task DeleteSessionAsync(this AgentPgClient client, DbContext db, Guid sessionId, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.DeleteSessionAsync(CurrentTransaction(db, nameof(DeleteSessionAsync)), sessionId, cancellationToken);
    }

    /// <summary>Creates a batch-mode run (Message Batches API) in the context's current transaction.</summary>
    /// <param name="client">The AgentPg client.</param>
    /// <param name="db">A context with a current transaction.</param>
    /// <param name="sessionId">The session.</param>
    /// <param name="agentId">The agent.</param>
    /// <param name="prompt">The user's prompt.</param>
    /// <param name="options">Run options (variables, instructions, idempotency key…).</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The run's id; workers see the run once the transaction commits.</returns>
    /// <exception cref="InvalidOperationException">The context has no current transaction.</exception>
    /// <exception cref="ArgumentException">The context's transaction is not an Npgsql transaction on the client's database.</exception>
    public static Task<Guid> RunAsync(this AgentPgClient client, DbContext db, Guid sessionId, Guid agentId, string prompt,
        RunOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.RunAsync(CurrentTransaction(db, nameof(RunAsync)), sessionId, agentId, prompt, options, cancellationToken);
    }

    /// <summary>Creates a streaming run in the context's current transaction.</summary>
    /// <param name="client">The AgentPg client.</param>
    /// <param name="db">A context with a current transaction.</param>
    /// <param name="sessionId">The session.</param>
    /// <param name="agentId">The agent.</param>
    /// <param name="prompt">The user's prompt.</param>
    /// <param name="options">Run options (variables, instructions, idempotency key…).</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The run's id; workers see the run once the transaction commits.</returns>
    /// <exception cref="InvalidOperationException">The context has no current transaction.</exception>
    /// <exception cref="ArgumentException">The context's transaction is not an Npgsql transaction on the client's database.</exception>
    public static Task<Guid> RunFastAsync(this AgentPgClient client, DbContext db, Guid sessionId, Guid agentId, string prompt,
        RunOptions? options = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.RunFastAsync(CurrentTransaction(db, nameof(RunFastAsync)), sessionId, agentId, prompt, options, cancellationToken);
    }

    /// <summary>Approves a tool call waiting for a decision in the context's current transaction: the tool runs only once the
    /// transaction commits, together with the application's rows (an audit entry, a business change).</summary>
    /// <param name="client">The AgentPg client.</param>
    /// <param name="db">A context with a current transaction.</param>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="input">A corrected input, validated against the tool's schema; <see langword="null"/> keeps Claude's.</param>
    /// <param name="comment">A comment stored with the decision.</param>
    /// <param name="decidedBy">Who decided, stored with the decision.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>A task that completes when the decision is written in the transaction; a rollback leaves the request waiting.</returns>
    /// <exception cref="InvalidOperationException">The context has no current transaction.</exception>
    /// <exception cref="ArgumentException">The context's transaction is not an Npgsql transaction on the client's database, or
    /// <paramref name="input"/> does not match the tool's schema or is, with <paramref name="comment"/>, longer than
    /// <see cref="AgentPgOptions.MaxToolOutputLength"/>.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.ToolExecutionNotFound"/> or <see cref="AgentPgErrorCode.ApprovalNotPending"/>.</exception>
    public static Task ApproveToolCallAsync(this AgentPgClient client, DbContext db, Guid toolExecutionId, JsonElement? input = null,
        string? comment = null, string? decidedBy = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.ApproveToolCallAsync(CurrentTransaction(db, nameof(ApproveToolCallAsync)), toolExecutionId, input, comment, decidedBy, cancellationToken);
    }

    /// <summary>Rejects a tool call waiting for a decision in the context's current transaction: Claude receives the reason
    /// once the transaction commits.</summary>
    /// <param name="client">The AgentPg client.</param>
    /// <param name="db">A context with a current transaction.</param>
    /// <param name="toolExecutionId">The request's <see cref="ToolApprovalRequest.ToolExecutionId"/>.</param>
    /// <param name="reason">Why; Claude reads it.</param>
    /// <param name="decidedBy">Who decided, stored with the decision.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>A task that completes when the decision is written in the transaction; a rollback leaves the request waiting.</returns>
    /// <exception cref="InvalidOperationException">The context has no current transaction.</exception>
    /// <exception cref="ArgumentException">The context's transaction is not usable, or <paramref name="reason"/> is empty or longer than
    /// <see cref="AgentPgOptions.MaxToolOutputLength"/>.</exception>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.ToolExecutionNotFound"/> or <see cref="AgentPgErrorCode.ApprovalNotPending"/>.</exception>
    public static Task RejectToolCallAsync(this AgentPgClient client, DbContext db, Guid toolExecutionId, string reason, string? decidedBy = null,
        CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        return client.RejectToolCallAsync(CurrentTransaction(db, nameof(RejectToolCallAsync)), toolExecutionId, reason, decidedBy, cancellationToken);
    }

    /// <summary>Binds the context to a transactional tool's transaction, so its <c>SaveChangesAsync</c> writes commit
    /// exactly once, together with the tool's recorded result.</summary>
    /// <typeparam name="TContext">The context type.</typeparam>
    /// <param name="db">A context that has not opened a connection of its own yet (for example a scoped context resolved
    /// in the tool's constructor through <c>AddTool&lt;TTool&gt;()</c>).</param>
    /// <param name="context">The tool context of an <see cref="ITransactionalTool"/> execution.</param>
    /// <returns>The same context, for chaining.</returns>
    /// <remarks>
    /// <para>Do not commit or roll back the transaction, and do not use the context after the tool returns: the worker
    /// commits the tool's writes with its result, or rolls them back when the tool throws (a retry then starts afresh).</para>
    /// <para>A context from a pool (<c>AddDbContextPool</c>) resolved in a tool registered with <c>AddTool&lt;TTool&gt;()</c> gets a
    /// connection of its own back when the execution's scope ends, before it returns to the pool. A tool that leases a pooled
    /// context otherwise (a scope of its own) must not use this method on it: the context would keep the worker's connection.</para>
    /// <para>With a retrying execution strategy (<c>EnableRetryOnFailure</c>), call this and <c>SaveChangesAsync</c> inside
    /// <c>db.Database.CreateExecutionStrategy().ExecuteAsync(…)</c>: EF Core refuses to save in a transaction it did not
    /// begin inside the strategy.</para>
    /// </remarks>
    /// <exception cref="InvalidOperationException">The tool is not an <see cref="ITransactionalTool"/> (it has no transaction),
    /// or the context already has a transaction of its own.</exception>
    public static TContext UseToolTransaction<TContext>(this TContext db, ToolContext context)
        where TContext : DbContext
    {
        ArgumentNullException.ThrowIfNull(db);
        ArgumentNullException.ThrowIfNull(context);
        var transaction = context.Transaction ?? throw new InvalidOperationException(
            "This tool execution has no transaction: only tools that implement ITransactionalTool get one. " +
            "Implement ITransactionalTool to make the tool's EF Core writes commit exactly once with its result.");
        if (db.Database.CurrentTransaction is { } current)
        {
            if (ReferenceEquals(current.GetDbTransaction(), transaction))
            {
                return db;
            }

            throw new InvalidOperationException(
                "The DbContext already has a transaction of its own; use a fresh context (for example the scoped one the tool's constructor receives) for the tool's transaction.");
        }

        // Read before the context lets its own connection go: a context configured with a connection string gets it back.
        var connectionString = db.Database.GetConnectionString();
        var connection = transaction.Connection ?? throw new InvalidOperationException(
            "The tool's transaction has already completed: call UseToolTransaction while the tool runs.");
        // The worker owns the connection and the transaction: EF Core neither closes the one nor commits the other.
        db.Database.SetDbConnection(connection, contextOwnsConnection: false);
        db.Database.UseTransaction(transaction);
        // A pooled context (AddDbContextPool) outlives the scope: it must not take the worker's connection, disposed once the
        // execution ends (or still in the tool's transaction), to the next scope that leases it.
        context.ScopeEnd?.Register(() => Unbind(db, connection, connectionString));
        return db;
    }

    /// <summary>Gives a context bound by <see cref="UseToolTransaction"/> a connection of its own again, as configured.</summary>
    private static void Unbind(DbContext db, DbConnection connection, string? connectionString)
    {
        try
        {
            if (!ReferenceEquals(db.Database.GetDbConnection(), connection))
            {
                return;
            }

            db.Database.UseTransaction(null);
            // A context on a data source creates its connections from it again; one on a connection string needs it back.
            db.Database.SetDbConnection(null, contextOwnsConnection: true);
            if (db.Database.GetConnectionString() is null && connectionString is not null)
            {
                db.Database.SetConnectionString(connectionString);
            }
        }
        catch (ObjectDisposedException)
        {
            // The tool disposed the context itself: nothing goes back to a pool.
        }
    }

    private static DbTransaction CurrentTransaction(DbContext db, string method)
    {
        ArgumentNullException.ThrowIfNull(db);
        return db.Database.CurrentTransaction?.GetDbTransaction() ?? throw new InvalidOperationException(
            $"{method}(DbContext …) enlists in the context's current transaction, and {db.GetType().Name} has none. " +
            "Call await db.Database.BeginTransactionAsync() first, then SaveChangesAsync and CommitAsync after creating the AgentPg work " +
            "(or use the overload without a DbContext to create it in a transaction of its own).");
    }
}
