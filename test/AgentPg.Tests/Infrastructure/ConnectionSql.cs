using Npgsql;

namespace AgentPg.Tests.Infrastructure;

/// <summary>Statements on one open connection, for tests that look inside a transaction they hold (its function calls, its
/// locks) rather than through the schema fixture's pool.</summary>
public static class ConnectionSql
{
    public static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    public static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Calls of <paramref name="function"/> of the schema in the connection's transaction so far (needs
    /// <c>track_functions = 'pl'</c>; 0 before the first call).</summary>
    public static async Task<long> FunctionCallsAsync(NpgsqlConnection connection, string schema, string function)
    {
        var calls = await ScalarAsync<object>(connection, $"SELECT pg_stat_get_xact_function_calls('\"{schema}\".{function}'::regproc)");
        return calls is DBNull ? 0 : (long)calls;
    }
}
