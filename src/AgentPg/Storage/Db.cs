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
        var result = new List<T>();
        var reader = await batch.ExecuteReaderAsync(dataSource, prepare, cancellationToken).ConfigureAwait(false);
        await using (reader.ConfigureAwait(false))
        {
            while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
            {
                result.Add(read(reader));
            }
        }

        return result;
    }

    public static async Task<T?> QueryFirstOrDefaultAsync<T>(this NpgsqlCommand command, Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken)
        where T : class
    {
        var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
        await using (reader.ConfigureAwait(false))
        {
            return await reader.ReadAsync(cancellationToken).ConfigureAwait(false) ? read(reader) : null;
        }
    }

    public static async Task<List<T>> QueryListAsync<T>(this NpgsqlCommand command, Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken)
    {
        var result = new List<T>();
        var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
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
        var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            batch.Connection = connection;
            if (prepare)
            {
                await batch.PrepareAsync(cancellationToken).ConfigureAwait(false);
            }

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
        var connection = await dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            batch.Connection = connection;
            if (prepare)
            {
                await batch.PrepareAsync(cancellationToken).ConfigureAwait(false);
            }

            return await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
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
