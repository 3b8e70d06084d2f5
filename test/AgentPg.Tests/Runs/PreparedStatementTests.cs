using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Runs;

/// <summary><see cref="AgentPgOptions.PrepareStatements"/>: the workers' statements are prepared on the pooled connections they
/// use (and stay prepared after the connections return to the pool), and both settings process runs identically.</summary>
public sealed class PreparedStatementTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const int PoolSize = 3;

    [DatabaseTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task ToolRoundTrip_CompletesAndPreparesTheHotPathOnlyWhenEnabled(bool prepare)
    {
        // A small pool of its own, so every physical connection the client used can be inspected afterwards.
        await using var dataSource = TestDatabase.CreateDataSource(b => b.MaxPoolSize = PoolSize);
        await using var claude = await FakeClaudeServer.StartAsync();
        var client = AgentPgClient.Create(dataSource, db.Options(o =>
        {
            o.ApiKey = claude.ApiKey;
            o.BaseUrl = claude.BaseUrl;
            o.PrepareStatements = prepare;
        }));
        await using (client)
        {
            client.RegisterTool(new TestTool("lookup", (_, input, _) => Task.FromResult("found " + input.GetProperty("key").GetString()),
                new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["key"] = new() { Type = "string" } }, Required = ["key"] }));
            await client.StartAsync();
            var agent = await client.CreateAgentAsync(new AgentDefinition
            {
                Name = "prepared_" + (prepare ? "on" : "off"),
                Model = "claude-sonnet-4-5",
                Tools = ["lookup"],
            });
            var session = await client.NewSessionAsync();
            claude.Enqueue(
                FakeReply.Message(FakeContentBlock.ToolUse("lookup", new { key = "a" }, "toolu_prep1")),
                FakeReply.Text("Done."));

            var response = await Eventually.WithinAsync(client.RunFastSyncAsync(session, agent.Id, "look it up"), "the run to complete");

            Assert.Equal("Done.", response.Text);
            Assert.Equal("found a", Assert.Single(response.ToolCalls).Output);
            await client.StopAsync();
        }

        // Hold every physical connection of the pool at once and list what each has prepared for this schema.
        var connections = new List<NpgsqlConnection>();
        var prepared = new List<string>();
        try
        {
            for (var i = 0; i < PoolSize; i++)
            {
                connections.Add(await dataSource.OpenConnectionAsync());
            }

            foreach (var connection in connections)
            {
                await using var command = new NpgsqlCommand("SELECT statement FROM pg_prepared_statements WHERE statement LIKE '%' || $1 || '%'", connection);
                command.Parameters.Add(new NpgsqlParameter { Value = db.Schema });
                await using var reader = await command.ExecuteReaderAsync();
                while (await reader.ReadAsync())
                {
                    prepared.Add(reader.GetString(0));
                }
            }
        }
        finally
        {
            foreach (var connection in connections)
            {
                await connection.DisposeAsync();
            }
        }

        if (prepare)
        {
            Assert.Contains(prepared, s => s.Contains("agentpg_claim_runs", StringComparison.Ordinal));
            Assert.Contains(prepared, s => s.Contains("agentpg_claim_tool_executions", StringComparison.Ordinal));
            Assert.Contains(prepared, s => s.Contains("agentpg_claim_lost", StringComparison.Ordinal)); // the run fence
        }
        else
        {
            Assert.Empty(prepared);
        }
    }
}
