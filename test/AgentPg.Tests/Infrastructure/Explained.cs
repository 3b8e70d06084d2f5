using System.Text.Json;
using Npgsql;

namespace AgentPg.Tests.Infrastructure;

/// <summary>A statement run under <c>EXPLAIN (ANALYZE, BUFFERS)</c>: the rows its plan's top node returned and the pages it
/// read (shared buffers hit or read, a function's statements included). The plan tests count pages, not time: a plan that
/// reads a whole table does so on any machine.</summary>
internal static class Explained
{
    public static async Task<(int Rows, long Pages)> RunAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand("EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) " + sql, connection);
        using var plan = JsonDocument.Parse((string)(await command.ExecuteScalarAsync())!);
        var top = plan.RootElement[0].GetProperty("Plan");
        return (top.GetProperty("Actual Rows").GetInt32(),
            top.GetProperty("Shared Hit Blocks").GetInt64() + top.GetProperty("Shared Read Blocks").GetInt64());
    }
}
