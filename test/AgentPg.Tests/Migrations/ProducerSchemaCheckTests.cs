using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Migrations;

/// <summary>A client that is never started gets the same schema guidance as StartAsync, never a raw PostgreSQL error.</summary>
public sealed class ProducerSchemaCheckTests : ThrowawaySchemaTests
{
    public static TheoryData<string> Operations() =>
    [
        "NewSession", "GetSession", "CreateAgent", "GetOrCreateAgent", "GetAgentByName", "ListAgents", "RunFast", "Run",
        "GetRun", "WaitForRun", "GetMessages", "CancelRun", "GetRunDiagnostics", "Compact", "GetCompactionStats",
        "GetCompactionEvents", "RestoreCompaction",
    ];

    [DatabaseTheory]
    [MemberData(nameof(Operations))]
    public async Task ProducerCall_UnmigratedSchema_ThrowsSchemaVersionMismatchWithInstructions(string operation)
    {
        await using var client = Producer(NewSchema());

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => CallAsync(client, operation));

        Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
        Assert.Equal(operation, ex.Operation);
        Assert.Contains("not migrated", ex.Message, StringComparison.Ordinal);
        Assert.Contains("MigrateAsync", ex.Message, StringComparison.Ordinal);
        Assert.Contains("AgentPgMigrator.GetScript", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0, ex.Context["version"]);
    }

    [DatabaseFact]
    public async Task ProducerCall_SchemaNewerThanLibrary_SaysToUpgrade()
    {
        var schema = NewSchema();
        await new AgentPgMigrator(DataSource, schema).MigrateAsync();
        await ExecuteAsync($"INSERT INTO \"{schema}\".agentpg_migrations (version, name) VALUES ({AgentPgMigrator.LatestVersion + 1}, 'future')");
        await using var client = Producer(schema);

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => client.NewSessionAsync());

        Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
        Assert.Contains("Upgrade the AgentPg package", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task ProducerCall_InCallersTransaction_ChecksOnItAndLeavesItUsable()
    {
        // A pool of one connection, held by the caller's transaction: the check must not need a second one.
        await using var dataSource = TestDatabase.CreateDataSource(b => { b.MaxPoolSize = 1; b.Timeout = 5; });
        await using var client = AgentPgClient.Create(dataSource, new AgentPgOptions { Schema = NewSchema() });
        await using var connection = await dataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => client.NewSessionAsync(transaction));

        Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
        await using var command = new NpgsqlCommand("SELECT 1", connection, transaction);
        Assert.Equal(1, await command.ExecuteScalarAsync());
    }

    [DatabaseFact]
    public async Task ProducerCall_MigratedAfterAFailedCheck_Works()
    {
        var schema = NewSchema();
        await using var client = Producer(schema);
        await Assert.ThrowsAsync<AgentPgException>(() => client.NewSessionAsync());

        await new AgentPgMigrator(DataSource, schema).MigrateAsync();

        var sessionId = await client.NewSessionAsync();
        Assert.Equal(sessionId, (await client.GetSessionAsync(sessionId)).Id);
    }

    [DatabaseFact]
    public async Task WaitForRunAsync_SchemaDroppedAfterTheCheck_ThrowsSchemaVersionMismatch()
    {
        var schema = NewSchema();
        await new AgentPgMigrator(DataSource, schema).MigrateAsync();
        await using var client = Producer(schema);
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "a", Model = "claude-sonnet-4-5" });
        var runId = await client.RunFastAsync(await client.NewSessionAsync(), agent.Id, "hello");

        var waiting = client.WaitForRunAsync(runId);
        await ExecuteAsync($"DROP SCHEMA \"{schema}\" CASCADE");

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(waiting, "WaitForRunAsync to notice the dropped schema"));
        Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
        Assert.IsType<PostgresException>(ex.InnerException);
    }

    [DatabaseFact]
    public async Task WaitForRunAsync_SchemaDroppedWhileItPolls_ThrowsSchemaVersionMismatch()
    {
        // The wait has read the run (pending) and waits for its poll interval when the schema goes: the poll's statement, not
        // the read, meets the missing table. Before, that poll's PostgresException (42P01) escaped WaitForRunAsync raw.
        var schema = NewSchema();
        await new AgentPgMigrator(DataSource, schema).MigrateAsync();
        var poll = new HeldTimeouts(TimeSpan.FromMinutes(17));
        await using var client = AgentPgClient.Create(DataSource, new AgentPgOptions { Schema = schema, RunPollInterval = poll.Timeout, TimeProvider = poll });
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "a", Model = "claude-sonnet-4-5" });
        var runId = await client.RunFastAsync(await client.NewSessionAsync(), agent.Id, "hello");

        var waiting = client.WaitForRunAsync(runId);
        await poll.WaitForTimerAsync();
        await ExecuteAsync($"DROP SCHEMA \"{schema}\" CASCADE");
        poll.FireAll();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(waiting, "WaitForRunAsync to notice the dropped schema"));
        Assert.Equal(AgentPgErrorCode.SchemaVersionMismatch, ex.Code);
        Assert.Equal("WaitForRun", ex.Operation);
        Assert.IsType<PostgresException>(ex.InnerException);
    }

    private static Task CallAsync(AgentPgClient client, string operation)
    {
        var id = Guid.NewGuid();
        var agent = new AgentDefinition { Name = "a", Model = "claude-sonnet-4-5" };
        return operation switch
        {
            "NewSession" => client.NewSessionAsync(),
            "GetSession" => client.GetSessionAsync(id),
            "CreateAgent" => client.CreateAgentAsync(agent),
            "GetOrCreateAgent" => client.GetOrCreateAgentAsync(agent),
            "GetAgentByName" => client.GetAgentByNameAsync("a"),
            "ListAgents" => client.ListAgentsAsync(),
            "RunFast" => client.RunFastAsync(id, id, "hello"),
            "Run" => client.RunAsync(id, id, "hello"),
            "GetRun" => client.GetRunAsync(id),
            "WaitForRun" => client.WaitForRunAsync(id),
            "GetMessages" => client.GetMessagesAsync(id),
            "CancelRun" => client.CancelRunAsync(id),
            "GetRunDiagnostics" => client.GetRunDiagnosticsAsync(id),
            "Compact" => client.CompactAsync(id),
            "GetCompactionStats" => client.GetCompactionStatsAsync(id),
            "GetCompactionEvents" => client.GetCompactionEventsAsync(id),
            "RestoreCompaction" => client.RestoreCompactionAsync(id),
            _ => throw new ArgumentOutOfRangeException(nameof(operation)),
        };
    }
}
