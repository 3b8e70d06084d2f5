using Npgsql;

namespace AgentPg.Workers;

/// <summary>How many <see cref="ITransactionalTool"/> executions may run at once on a data source (review D8).</summary>
/// <remarks>
/// A transactional tool holds a pooled connection, with its transaction open, for as long as it runs (up to
/// <see cref="AgentPgOptions.ToolTimeout"/>). If such tools could take every connection of the pool, the heartbeat, the
/// leader's lease, fences and claims would wait for one, time out, and the live instance would be evicted and its work
/// done again. So they get what the pool has left after the connection LISTEN keeps (1) and a reserve for that short
/// work (a quarter of the pool, at least 2): with Npgsql's default MaxPoolSize of 100 that is 74 (above the default
/// MaxConcurrentTools of 50), with 20 it is 14, with 4 it is 1. Without pooling there is no limit beyond
/// MaxConcurrentTools. Executions beyond the limit wait, claimed, for a connection slot before their tool starts.
/// </remarks>
internal static class PoolBudget
{
    public const int ListenConnections = 1;

    /// <summary>Connections kept for heartbeats, leader work, fences and claims.</summary>
    public static int Reserve(int maxPoolSize) => Math.Max(2, maxPoolSize / 4);

    public static int TransactionalToolLimit(NpgsqlDataSource dataSource, int maxConcurrentTools)
    {
        var builder = new NpgsqlConnectionStringBuilder(dataSource.ConnectionString);
        if (!builder.Pooling)
        {
            return maxConcurrentTools;
        }

        return Math.Clamp(builder.MaxPoolSize - ListenConnections - Reserve(builder.MaxPoolSize), 0, maxConcurrentTools);
    }

    /// <summary>Throws when transactional tools are registered but the pool leaves none of them a connection.</summary>
    public static void Validate(NpgsqlDataSource dataSource, int maxConcurrentTools, IEnumerable<ITool> tools)
    {
        if (TransactionalToolLimit(dataSource, maxConcurrentTools) > 0 || !tools.Any(t => t is ITransactionalTool))
        {
            return;
        }

        var maxPoolSize = new NpgsqlConnectionStringBuilder(dataSource.ConnectionString).MaxPoolSize;
        throw new InvalidOperationException(
            $"The data source's MaxPoolSize ({maxPoolSize}) leaves no connection for transactional tools: AgentPg keeps " +
            $"{ListenConnections} for LISTEN and {Reserve(maxPoolSize)} for heartbeats, fences and claims, and each running " +
            $"ITransactionalTool holds one more. Raise MaxPoolSize in the connection string to at least {ListenConnections + 2 + 1}.");
    }
}
