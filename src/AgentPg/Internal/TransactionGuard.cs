using System.Data.Common;
using Npgsql;

namespace AgentPg.Internal;

internal static class TransactionGuard
{
    /// <summary>Whether the transaction was committed or rolled back (or its connection is gone).</summary>
    public static bool IsCompleted(NpgsqlTransaction transaction)
    {
        var connection = transaction.Connection;
        if (connection is null)
        {
            return true;
        }

        try
        {
            // Npgsql exposes completion only by refusing to enlist a command (no I/O happens here).
            using var probe = new NpgsqlCommand(null, connection, transaction);
            return false;
        }
        catch (InvalidOperationException)
        {
            return true;
        }
    }

    /// <summary>Accepts any ADO.NET transaction that is a live Npgsql transaction on the client's database.</summary>
    public static NpgsqlTransaction Require(DbTransaction transaction, NpgsqlDataSource dataSource, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(transaction, parameterName);
        if (transaction is not NpgsqlTransaction npgsql)
        {
            throw new ArgumentException(
                $"The transaction must be an NpgsqlTransaction on the client's PostgreSQL database, but it is a {transaction.GetType().FullName}. " +
                "Start it from an NpgsqlConnection (with EF Core: context.Database.CurrentTransaction.GetDbTransaction()).",
                parameterName);
        }

        var connection = IsCompleted(npgsql) ? null : npgsql.Connection;
        if (connection is null)
        {
            throw new ArgumentException("The transaction has already been committed or rolled back; pass a transaction that is still open.", parameterName);
        }

        var expected = new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).Database;
        if (!string.IsNullOrEmpty(expected) && !string.IsNullOrEmpty(connection.Database)
            && !string.Equals(expected, connection.Database, StringComparison.Ordinal))
        {
            throw new ArgumentException(
                $"The transaction's connection is to database '{connection.Database}', but the client's data source uses '{expected}'. " +
                "Use a transaction on the same database.", parameterName);
        }

        return npgsql;
    }
}
