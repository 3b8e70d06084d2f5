using System.Text.Json;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Migrations;

public sealed class SchemaIsolationTests : IAsyncLifetime
{
    private readonly SchemaFixture _a = new();
    private readonly SchemaFixture _b = new();

    [DatabaseFact]
    public async Task TwoSchemas_DataIsIsolated()
    {
        var clientA = _a.CreateClient();
        var clientB = _b.CreateClient();

        var agent = await clientA.CreateAgentAsync(new AgentDefinition { Name = "same_name", Model = "m" });
        await clientB.CreateAgentAsync(new AgentDefinition { Name = "same_name", Model = "m" });

        Assert.Equal(1, (await clientA.ListAgentsAsync()).TotalCount);
        Assert.Equal(1, (await clientB.ListAgentsAsync()).TotalCount);
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => clientB.GetAgentByIdAsync(agent.Id));
        Assert.Equal(AgentPgErrorCode.AgentNotFound, ex.Code);
    }

    [DatabaseFact]
    public async Task TwoSchemas_FunctionsUseTheirOwnSchemaWhateverTheSearchPath()
    {
        Assert.Equal(_a.Schema + ".agentpg_run_created", await _a.ScalarAsync<string>("SELECT {schema}.agentpg_channel('agentpg_run_created')"));
        Assert.Equal(_b.Schema + ".agentpg_run_created", await _b.ScalarAsync<string>("SELECT {schema}.agentpg_channel('agentpg_run_created')"));

        // A function of schema A called with B first in the search path still reads A's tables.
        await using var connection = await TestDatabase.DataSource.OpenConnectionAsync();
        await using (var set = new NpgsqlCommand($"SET search_path TO \"{_b.Schema}\"", connection))
        {
            await set.ExecuteNonQueryAsync();
        }

        try
        {
            await using var call = new NpgsqlCommand($"SELECT count(*) FROM \"{_a.Schema}\".agentpg_claim_runs('nobody', 10, 'streaming')", connection);
            Assert.Equal(0L, await call.ExecuteScalarAsync());
        }
        finally
        {
            await using var reset = new NpgsqlCommand("RESET search_path", connection);
            await reset.ExecuteNonQueryAsync();
        }
    }

    [DatabaseFact]
    public async Task TwoSchemas_NotificationsDoNotCross()
    {
        var runInB = await InsertRunAsync(_b);

        await using var listener = await TestDatabase.DataSource.OpenConnectionAsync();
        var received = new List<NpgsqlNotificationEventArgs>();
        listener.Notification += (_, e) => received.Add(e);
        await using (var listen = new NpgsqlCommand($"LISTEN \"{_a.Schema}.agentpg_run_created\"", listener))
        {
            await listen.ExecuteNonQueryAsync();
        }

        var runInBAfterListen = await InsertRunAsync(_b);
        var runInA = await InsertRunAsync(_a);

        await Eventually.TrueAsync(async () =>
        {
            await listener.WaitAsync(TimeSpan.FromMilliseconds(200));
            return received.Count > 0;
        }, "schema A's run notification arrives");

        var first = received[0];
        Assert.Equal(_a.Schema + ".agentpg_run_created", first.Channel);
        using var payload = JsonDocument.Parse(first.Payload);
        Assert.Equal(runInA, payload.RootElement.GetProperty("run_id").GetGuid());
        Assert.DoesNotContain(received, n => n.Payload.Contains(runInB.ToString(), StringComparison.Ordinal)
                                             || n.Payload.Contains(runInBAfterListen.ToString(), StringComparison.Ordinal));
    }

    public async Task InitializeAsync()
    {
        await _a.InitializeAsync();
        await _b.InitializeAsync();
    }

    public async Task DisposeAsync()
    {
        await _a.DisposeAsync();
        await _b.DisposeAsync();
    }

    private static async Task<Guid> InsertRunAsync(SchemaFixture fixture)
    {
        var client = fixture.CreateClient();
        var agent = await client.GetOrCreateAgentAsync(new AgentDefinition { Name = "notifier", Model = "m" });
        var session = await client.NewSessionAsync();
        return await fixture.Seed.RunAsync(session, agent.Id);
    }
}
