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

    public static bool IsUniqueViolation(this PostgresException exception, string constraint)
        => exception.SqlState == PostgresErrorCodes.UniqueViolation && exception.ConstraintName == constraint;

    /// <summary>SQLSTATE raised by agentpg_fence_run / agentpg_fence_tool_execution when the work was taken away.</summary>
    public const string ClaimLostSqlState = "AP001";

    public static bool IsClaimLost(this Exception exception)
        => exception is PostgresException { SqlState: ClaimLostSqlState }
           || (exception is NpgsqlException { InnerException: PostgresException { SqlState: ClaimLostSqlState } });
}
