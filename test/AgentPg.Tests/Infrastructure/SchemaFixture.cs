using Npgsql;

namespace AgentPg.Tests.Infrastructure;

/// <summary>A migrated schema of its own for one test class, dropped afterwards.</summary>
public sealed class SchemaFixture : IAsyncLifetime
{
    public string Schema { get; } = NewSchemaName();

    public NpgsqlDataSource DataSource => TestDatabase.DataSource;

    /// <summary>Seeds rows of this schema in a given state.</summary>
    public TestData Seed => new(this);

    public static string NewSchemaName() => "t_" + Guid.NewGuid().ToString("N")[..16];

    public async Task InitializeAsync()
    {
        if (TestDatabase.UnavailableReason is not null && !TestDatabase.IsCi)
        {
            return;
        }

        await new AgentPgMigrator(DataSource, Schema).MigrateAsync();
    }

    public async Task DisposeAsync()
    {
        if (TestDatabase.UnavailableReason is not null)
        {
            return;
        }

        await using var command = DataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{Schema}\" CASCADE");
        await command.ExecuteNonQueryAsync();
    }

    /// <summary>Options for a client on this schema with short test intervals.</summary>
    public AgentPgOptions Options(Action<AgentPgOptions>? configure = null)
    {
        var options = new AgentPgOptions
        {
            Schema = Schema,
            ApiKey = "test-key",
            RunPollInterval = TimeSpan.FromMilliseconds(200),
            ToolPollInterval = TimeSpan.FromMilliseconds(100),
            BatchPollInterval = TimeSpan.FromMilliseconds(200),
            HeartbeatInterval = TimeSpan.FromMilliseconds(500),
            InstanceTtl = TimeSpan.FromSeconds(10),
            LeaderTtl = TimeSpan.FromSeconds(2),
            CleanupInterval = TimeSpan.FromSeconds(1),
        };
        configure?.Invoke(options);
        return options;
    }

    public AgentPgClient CreateClient(Action<AgentPgOptions>? configure = null) => CreateClient(DataSource, configure);

    /// <summary>A client that is never started (a producer) polling every 100 ms, and <paramref name="count"/> streaming runs of a
    /// fresh agent, each in a session of its own: nothing processes them, so they stay pending until the test ends them.</summary>
    public async Task<(AgentPgClient Producer, List<Guid> Runs)> PendingRunsAsync(int count)
    {
        var producer = CreateClient(o => o.RunPollInterval = TimeSpan.FromMilliseconds(100));
        var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = "pending_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var runs = new List<Guid>();
        for (var i = 0; i < count; i++)
        {
            runs.Add(await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, "question " + i));
        }

        return (producer, runs);
    }

    /// <summary>A client on this schema that uses <paramref name="dataSource"/> (a pool of its own) instead of the shared one.</summary>
    public AgentPgClient CreateClient(NpgsqlDataSource dataSource, Action<AgentPgOptions>? configure = null) => AgentPgClient.Create(dataSource, Options(configure));

    public async Task<T> ScalarAsync<T>(string sql, params object[] parameters)
    {
        await using var command = DataSource.CreateCommand(sql.Replace("{schema}", $"\"{Schema}\"", StringComparison.Ordinal));
        foreach (var p in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = p });
        }

        return (T)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>Installs a trigger for a test on <paramref name="table"/> of the schema: <c>CREATE TRIGGER name timing ON table FOR
    /// EACH ROW [WHEN (when)]</c> (<c>FOR EACH STATEMENT</c> with <paramref name="perStatement"/>), whose function runs
    /// <paramref name="body"/> (PL/pgSQL statements; <c>{schema}</c> names the schema). Disposing the result drops the trigger and
    /// its function, so that the class's other tests, which share the schema, never see it; a test may dispose it early (the
    /// second disposal does nothing).</summary>
    public async Task<IAsyncDisposable> TriggerAsync(string name, string timing, string table, string body, string? when = null,
        bool perStatement = false)
    {
        await ExecuteAsync($"CREATE FUNCTION {{schema}}.{name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {body} END $$");
        await ExecuteAsync($"CREATE TRIGGER {name} {timing} ON {{schema}}.{table} FOR EACH {(perStatement ? "STATEMENT" : "ROW")} " +
            $"{(when is null ? "" : $"WHEN ({when}) ")}EXECUTE FUNCTION {{schema}}.{name}()");
        return new TestTrigger(this, name, table);
    }

    private sealed class TestTrigger(SchemaFixture db, string name, string table) : IAsyncDisposable
    {
        private int _dropped;

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _dropped, 1) == 0)
            {
                await db.ExecuteAsync($"DROP TRIGGER {name} ON {{schema}}.{table}; DROP FUNCTION {{schema}}.{name}()");
            }
        }
    }

    public async Task<int> ExecuteAsync(string sql, params object[] parameters)
    {
        await using var command = DataSource.CreateCommand(sql.Replace("{schema}", $"\"{Schema}\"", StringComparison.Ordinal));
        foreach (var p in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = p });
        }

        return await command.ExecuteNonQueryAsync();
    }
}
