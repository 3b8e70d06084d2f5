using System.Collections.Concurrent;
using AgentPg.Runs;
using AgentPg.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AgentPg.Tests.Infrastructure;

/// <summary>An <see cref="Engine"/> on a test schema for testing one internal service directly, without starting a client.</summary>
internal static class TestEngine
{
    public static Engine Create(SchemaFixture db, string instanceId, Action<AgentPgOptions>? configure = null)
        => Create(db.DataSource, db.Options(configure), instanceId);

    /// <summary>An engine for unit tests: its data source is never opened.</summary>
    public static Engine CreateWithoutDatabase(string instanceId, AgentPgOptions? options = null)
        => Create(s_unused, options ?? new AgentPgOptions { ApiKey = "test-key" }, instanceId);

    private static readonly NpgsqlDataSource s_unused = NpgsqlDataSource.Create("Host=unused.invalid");

    private static Engine Create(NpgsqlDataSource dataSource, AgentPgOptions options, string instanceId)
        => new(dataSource, options, new Sql(new SchemaName(options.Schema)), NullLogger.Instance, instanceId, new ConcurrentDictionary<string, ITool>());
}
