using Npgsql;

namespace AgentPg.Tests.Infrastructure;

/// <summary>The PostgreSQL the tests run against: <c>AGENTPG_TEST_DATABASE</c> (set by <c>./build.sh test</c>), or a local default.</summary>
public static class TestDatabase
{
    private static readonly Lazy<string?> s_unavailableReason = new(Probe);
    private static readonly Lazy<NpgsqlDataSource> s_dataSource = new(() => CreateDataSource());

    public static string ConnectionString { get; } =
        Environment.GetEnvironmentVariable("AGENTPG_TEST_DATABASE") is { Length: > 0 } cs
            ? cs
            : "Host=127.0.0.1;Port=5432;Username=postgres;Database=postgres";

    /// <summary>Why the database cannot be used, or null when it can.</summary>
    public static string? UnavailableReason => s_unavailableReason.Value;

    public static bool IsCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>A shared data source for tests that need no special connection behaviour.</summary>
    public static NpgsqlDataSource DataSource => s_dataSource.Value;

    public static NpgsqlDataSource CreateDataSource(Action<NpgsqlConnectionStringBuilder>? configure = null)
    {
        var builder = new NpgsqlConnectionStringBuilder(ConnectionString)
        {
            MaxPoolSize = 100,
            // Eight test classes run at once on two cores: a connection freed by a test whose continuation waits for a thread
            // can take seconds to come back.
            Timeout = 30,
            CommandTimeout = 60,
        };
        configure?.Invoke(builder);
        return NpgsqlDataSource.Create(builder.ConnectionString);
    }

    private static string? Probe()
    {
        try
        {
            using var connection = new NpgsqlConnection(new NpgsqlConnectionStringBuilder(ConnectionString) { Timeout = 5 }.ConnectionString);
            connection.Open();
            return null;
        }
        catch (Exception ex)
        {
            return $"PostgreSQL is not reachable at '{ConnectionString}': {ex.Message}";
        }
    }
}
