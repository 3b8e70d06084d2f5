using AgentPg.Testing;
using Npgsql;

namespace AgentPg.Benchmarks;

/// <summary>What every phase shares: the database, the AgentPg schema, the fake Claude and the completion listener.</summary>
internal sealed class BenchEnvironment : IAsyncDisposable
{
    /// <summary>The schema AgentPg is migrated into (dropped and recreated at start, so every run starts empty).</summary>
    public const string Schema = "agentpg_bench";

    public const string Reply = "Hello! How can I help you today?";

    private BenchEnvironment(NpgsqlDataSource dataSource, NpgsqlConnectionStringBuilder connection, FakeClaudeServer claude, RunCompletions completions, string serverVersion)
    {
        DataSource = dataSource;
        Connection = connection;
        Claude = claude;
        Completions = completions;
        ServerVersion = serverVersion;
    }

    public NpgsqlDataSource DataSource { get; }

    public NpgsqlConnectionStringBuilder Connection { get; }

    public FakeClaudeServer Claude { get; }

    public RunCompletions Completions { get; }

    public string ServerVersion { get; }

    public static async Task<BenchEnvironment> StartAsync(string connectionString, int poolSize)
    {
        var builder = new NpgsqlDataSourceBuilder(connectionString);
        builder.ConnectionStringBuilder.MaxPoolSize = Math.Max(builder.ConnectionStringBuilder.MaxPoolSize, poolSize);
        builder.ConnectionStringBuilder.Timeout = 30;
        Breakdown.Configure(builder);
        var dataSource = builder.Build();

        string version;
        await using (var command = dataSource.CreateCommand($"""
            SELECT current_setting('server_version') || ' (fsync=' || current_setting('fsync')
                   || ', synchronous_commit=' || current_setting('synchronous_commit')
                   || ', shared_buffers=' || current_setting('shared_buffers') || ')';
            DROP SCHEMA IF EXISTS {Schema} CASCADE
            """))
        {
            version = (string)(await command.ExecuteScalarAsync())!;
        }

        await new AgentPgMigrator(dataSource, Schema).MigrateAsync();

        // A zero-latency model: every request is answered at once with one short text block (end_turn).
        var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
        {
            RecordRequests = false,
            StreamChunkSize = 64,
            Responder = _ => FakeReply.Text(Reply),
        });
        var completions = await RunCompletions.StartAsync(dataSource, Schema);
        return new BenchEnvironment(dataSource, new NpgsqlConnectionStringBuilder(builder.ConnectionString), claude, completions, version);
    }

    public AgentPgClient CreateClient(int maxConcurrentStreamingRuns, Action<AgentPgOptions>? configure = null, FakeClaudeServer? claude = null)
    {
        claude ??= Claude;
        var options = new AgentPgOptions
        {
            Schema = Schema,
            ApiKey = claude.ApiKey,
            BaseUrl = claude.BaseUrl,
            InstanceName = "bench",
            MaxConcurrentStreamingRuns = maxConcurrentStreamingRuns,
        };
        configure?.Invoke(options);
        return AgentPgClient.Create(DataSource, options);
    }

    public static Task<AgentDefinition> CreateAgentAsync(AgentPgClient client) => client.CreateAgentAsync(new AgentDefinition
    {
        Name = "bench_" + Guid.NewGuid().ToString("N")[..8],
        Model = "claude-sonnet-4-5",
        SystemPrompt = "You are a helpful assistant.",
        MaxTokens = 1024,
        Tools = [],
    });

    /// <summary>Creates sessions up front (not part of any measurement), <paramref name="parallelism"/> at a time.</summary>
    public static async Task<Guid[]> CreateSessionsAsync(AgentPgClient client, int count, int parallelism = 8)
    {
        var sessions = new Guid[count];
        await Parallel.ForAsync(0, count, new ParallelOptions { MaxDegreeOfParallelism = parallelism },
            async (i, ct) => sessions[i] = await client.NewSessionAsync(cancellationToken: ct));
        return sessions;
    }

    /// <summary>Creates many sessions in one statement, for phases that give every run a fresh session: a plain insert of
    /// default rows, exactly what <c>NewSessionAsync</c> writes, without one round trip per session.</summary>
    public async Task<Guid[]> CreateSessionsInBulkAsync(int count)
    {
        await using var command = DataSource.CreateCommand(
            $"INSERT INTO {Schema}.agentpg_sessions (metadata) SELECT '{{}}'::jsonb FROM generate_series(1, $1) RETURNING id");
        command.Parameters.Add(new NpgsqlParameter<int> { TypedValue = count });
        command.CommandTimeout = 600;
        var sessions = new List<Guid>(count);
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            sessions.Add(reader.GetGuid(0));
        }

        return [.. sessions];
    }

    /// <summary>Levels the field before a timed phase: statistics, dead rows and dirty buffers of the previous phase.</summary>
    public async Task SettleAsync(params string[] tables)
    {
        foreach (var table in tables)
        {
            await ExecuteAsync($"VACUUM ANALYZE {table}");
        }

        try
        {
            await ExecuteAsync("CHECKPOINT");
        }
        catch (PostgresException)
        {
            // Not a superuser (and no pg_checkpoint): the phase may include a checkpoint, as production would.
        }
    }

    /// <summary>What autovacuum does to a table that grew: fresh statistics, and the statements planned before them
    /// planned again.</summary>
    public async Task AnalyzeAsync(params string[] tables)
    {
        foreach (var table in tables)
        {
            await ExecuteAsync($"ANALYZE {table}");
        }
    }

    public async Task ExecuteAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        command.CommandTimeout = 600;
        await command.ExecuteNonQueryAsync();
    }

    public async Task<T> ScalarAsync<T>(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        return (T)(await command.ExecuteScalarAsync())!;
    }

    public async Task DropAsync()
    {
        await ExecuteAsync($"DROP SCHEMA IF EXISTS {Schema} CASCADE");
        await ExecuteAsync($"DROP SCHEMA IF EXISTS {PgbenchBaseline.Schema} CASCADE");
    }

    public async ValueTask DisposeAsync()
    {
        await Completions.DisposeAsync();
        await Claude.DisposeAsync();
        await DataSource.DisposeAsync();
    }
}
