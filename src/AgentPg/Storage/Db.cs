using System.Data;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>Command helpers: a data-source command (own pooled connection) or one on the caller's transaction.</summary>
internal static class Db
{
    public static NpgsqlCommand Command(NpgsqlDataSource dataSource, NpgsqlTransaction? transaction, string sql, params NpgsqlParameter[] parameters)
    {
        var command = transaction is null ? dataSource.CreateCommand(sql) : new NpgsqlCommand(sql, transaction.Connection, transaction);
        command.Parameters.AddRange(parameters);
        return command;
    }

    /// <summary>A command on an open connection (in <paramref name="transaction"/> when set).</summary>
    public static NpgsqlCommand Command(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, params NpgsqlParameter[] parameters)
    {
        var command = new NpgsqlCommand(sql, connection, transaction);
        command.Parameters.AddRange(parameters);
        return command;
    }

    /// <summary>Appends a statement with its parameters to <paramref name="batch"/>. Only the <c>Storage/*Sql</c> classes call
    /// this: they own each statement's text and its binding.</summary>
    public static NpgsqlBatchCommand Append(this NpgsqlBatch batch, string sql, params NpgsqlParameter[] parameters)
    {
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.AddRange(parameters);
        batch.BatchCommands.Add(command);
        return command;
    }

    /// <summary>Executes a batch on a pooled connection of its own and reads every row of its results.</summary>
    public static async Task<List<T>> QueryListAsync<T>(this NpgsqlBatch batch, NpgsqlDataSource dataSource, bool prepare,
        Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken)
    {
        var reader = await batch.ExecuteReaderAsync(dataSource, prepare, cancellationToken).ConfigureAwait(false);
        return await ReadAllAsync(reader, read, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Executes a command, reads its first row with <paramref name="read"/> (or returns null when there is none) and
    /// disposes the command.</summary>
    public static async Task<T?> QueryFirstOrDefaultAsync<T>(this NpgsqlCommand command, Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken)
        where T : class
        => (await command.QueryFirstAsync(read, cancellationToken).ConfigureAwait(false)).Row;

    /// <summary>Executes a command, reads its first row with <paramref name="read"/> and disposes the command; <c>Found</c> is
    /// false when there is no row (for value results).</summary>
    public static async Task<(bool Found, T Row)> QueryFirstAsync<T>(this NpgsqlCommand command, Func<NpgsqlDataReader, T> read,
        CancellationToken cancellationToken)
    {
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? (true, read(reader)) : (false, default!);
            }
        }
    }

    /// <summary>Executes a command, reads every row with <paramref name="read"/> and disposes the command.</summary>
    public static async Task<List<T>> QueryListAsync<T>(this NpgsqlCommand command, Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken)
    {
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            return await ReadAllAsync(reader, read, cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Executes a command that returns no rows, disposes it and returns the rows it affected.</summary>
    public static async Task<int> ExecuteAsync(this NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await using (command.ConfigureAwait(false))
        {
            return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Executes a batch that returns no rows on the caller's transaction and disposes it.</summary>
    public static async Task ExecuteAsync(this NpgsqlBatch batch, NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        await using (batch.ConfigureAwait(false))
        {
            batch.Connection = transaction.Connection;
            batch.Transaction = transaction;
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Executes a batch on the caller's transaction and returns its reader (the batch stays the caller's to dispose).</summary>
    public static Task<NpgsqlDataReader> ExecuteReaderAsync(this NpgsqlBatch batch, NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        batch.Connection = transaction.Connection;
        batch.Transaction = transaction;
        return batch.ExecuteReaderAsync(cancellationToken);
    }

    /// <summary>Executes a command, disposes it and returns the first column of its first row (null when there is none).</summary>
    public static async Task<object?> ScalarAsync(this NpgsqlCommand command, CancellationToken cancellationToken)
    {
        await using (command.ConfigureAwait(false))
        {
            var value = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return value is DBNull ? null : value;
        }
    }

    // Reads every row, then disposes the reader (which returns a data-source connection to the pool).
    private static async Task<List<T>> ReadAllAsync<T>(NpgsqlDataReader reader, Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken)
    {
        var result = new List<T>();
        await using (reader.ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                result.Add(read(reader));
            }
        }

        return result;
    }

    /// <summary>Executes a batch on a pooled connection of its own, its statements prepared first when
    /// <paramref name="prepare"/> is set. Npgsql keeps prepared statements on the physical connection across pool returns, so a
    /// statement is parsed and planned once per connection and later preparations cost no round trip. Disposing the reader
    /// returns the connection to the pool.</summary>
    public static async Task<NpgsqlDataReader> ExecuteReaderAsync(this NpgsqlBatch batch, NpgsqlDataSource dataSource, bool prepare,
        CancellationToken cancellationToken)
    {
        var connection = await OpenForAsync(batch, dataSource, prepare, cancellationToken).ConfigureAwait(false);
        try
        {
            return await batch.ExecuteReaderAsync(CommandBehavior.CloseConnection, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Executes a batch that returns no rows on a pooled connection of its own; see
    /// <see cref="ExecuteReaderAsync(NpgsqlBatch, NpgsqlDataSource, bool, CancellationToken)"/>.</summary>
    public static async Task<int> ExecuteNonQueryAsync(this NpgsqlBatch batch, NpgsqlDataSource dataSource, bool prepare,
        CancellationToken cancellationToken)
    {
        var connection = await OpenForAsync(batch, dataSource, prepare, cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            return await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    // The one way a batch gets its connection: a pooled one of its own, the statements prepared on it when asked.
    private static async Task<NpgsqlConnection> OpenForAsync(NpgsqlBatch batch, NpgsqlDataSource dataSource, bool prepare, CancellationToken cancellationToken)
    {
        var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            batch.Connection = connection;
            if (prepare)
            {
                await batch.PrepareAsync(cancellationToken).ConfigureAwait(false);
            }

            return connection;
        }
        catch
        {
            await connection.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    public static bool IsUniqueViolation(this PostgresException exception, string constraint)
        => exception.SqlState == PostgresErrorCodes.UniqueViolation && exception.ConstraintName == constraint;

    /// <summary>SQLSTATE raised by agentpg_fence_run / agentpg_fence_tool_execution when the work was taken away.</summary>
    public const string ClaimLostSqlState = "AP001";

    public static bool IsClaimLost(this Exception exception)
        => exception is PostgresException { SqlState: ClaimLostSqlState }
           || (exception is NpgsqlException { InnerException: PostgresException { SqlState: ClaimLostSqlState } });
}
