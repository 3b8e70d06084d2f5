using Npgsql;

namespace AgentPg.Tests.Infrastructure;

/// <summary>A test class whose tests make schemas of their own (not migrated, migrated by hand, dropped mid-test) on the
/// shared test database: <see cref="NewSchema"/> names one, and every schema it named is dropped after the class.</summary>
public abstract class ThrowawaySchemaTests : IAsyncLifetime
{
    private readonly List<string> _schemas = [];

    protected static NpgsqlDataSource DataSource => TestDatabase.DataSource;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (TestDatabase.UnavailableReason is not null)
        {
            return;
        }

        foreach (var schema in _schemas)
        {
            await ExecuteAsync($"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
        }
    }

    /// <summary>A client that is never started (a producer) on <paramref name="schema"/>.</summary>
    protected static AgentPgClient Producer(string schema)
        => AgentPgClient.Create(DataSource, new AgentPgOptions { Schema = schema, RunPollInterval = TimeSpan.FromMilliseconds(100) });

    /// <summary>A new schema name, dropped after the class (the schema itself is created by the test, if at all).</summary>
    protected string NewSchema()
    {
        var schema = SchemaFixture.NewSchemaName();
        _schemas.Add(schema);
        return schema;
    }

    protected static async Task ExecuteAsync(string sql)
    {
        await using var command = DataSource.CreateCommand(sql);
        await command.ExecuteNonQueryAsync();
    }
}
