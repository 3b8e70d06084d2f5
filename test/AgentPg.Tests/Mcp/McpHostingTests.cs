using AgentPg.Mcp;
using AgentPg.Testing;
using AgentPg.Tests.Hosting;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace AgentPg.Tests.Mcp;

public sealed class McpHostingTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task AddMcpServer_RegistersTheServersToolsBeforeTheWorkerStarts()
    {
        await using var server = await HttpTestServer.StartAsync();
        await using var claude = await FakeClaudeServer.StartAsync();
        var builder = HostFactory.Builder();
        builder.Services.AddAgentPg(HostFactory.Options(db, claude))
            .AddWorker()
            .AddMcpServer(new McpServerOptions { Name = "web", Endpoint = server.Endpoint });
        using var host = builder.Build();

        await host.StartAsync();
        var client = host.Services.GetRequiredService<AgentPgClient>();

        Assert.NotNull(client.GetTool("web__echo"));
        // Registered with the instance itself at start, not afterwards in the background.
        Assert.Equal(1L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_instance_tools WHERE instance_id = $1 AND tool_name = 'web__echo'", client.InstanceId));
        await host.StopAsync();
    }

    [Fact]
    public void AddMcpServer_ValidatesTheOptionsAtOnce()
    {
        var builder = HostFactory.Builder();
        var error = Assert.Throws<ArgumentException>(() => builder.Services.AddAgentPg().AddMcpServer(new McpServerOptions { Name = "x" }));
        Assert.Contains("set Command (stdio", error.Message, StringComparison.Ordinal);
    }
}
