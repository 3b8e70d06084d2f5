using AgentPg.Testing;
using Npgsql;

namespace AgentPg.Tests.Infrastructure;

/// <summary>A fake Claude plus AgentPg clients on a test schema; disposing stops everything.</summary>
public sealed class Harness : IAsyncDisposable
{
    private readonly List<AgentPgClient> _clients = [];

    private Harness(SchemaFixture db, FakeClaudeServer claude)
    {
        Db = db;
        Claude = claude;
    }

    public SchemaFixture Db { get; }

    public FakeClaudeServer Claude { get; }

    /// <summary>The first client (started unless created with start: false).</summary>
    public AgentPgClient Client => _clients[0];

    public static Task<Harness> StartAsync(SchemaFixture db, Action<AgentPgOptions>? configure = null, bool start = true, params ITool[] tools)
        => StartAsync(db, new FakeClaudeServerOptions(), configure, start, tools);

    public static async Task<Harness> StartAsync(SchemaFixture db, FakeClaudeServerOptions claudeOptions, Action<AgentPgOptions>? configure = null, bool start = true, params ITool[] tools)
    {
        var claude = await FakeClaudeServer.StartAsync(claudeOptions);
        var harness = new Harness(db, claude);
        await harness.AddClientAsync(configure, start, tools);
        return harness;
    }

    public Task<AgentPgClient> AddClientAsync(Action<AgentPgOptions>? configure = null, bool start = true, params ITool[] tools)
        => AddClientAsync(Db.DataSource, configure, start, tools);

    /// <summary>A client on <paramref name="dataSource"/>: a test that makes hundreds of concurrent calls gives them a pool of
    /// their own, so its burst cannot take every connection of the pool the test classes running beside it share. Dispose the
    /// data source after the harness.</summary>
    public async Task<AgentPgClient> AddClientAsync(NpgsqlDataSource dataSource, Action<AgentPgOptions>? configure = null, bool start = true, params ITool[] tools)
    {
        var client = Db.CreateClient(dataSource, o =>
        {
            o.ApiKey = Claude.ApiKey;
            o.BaseUrl = Claude.BaseUrl;
            configure?.Invoke(o);
        });
        foreach (var tool in tools)
        {
            client.RegisterTool(tool);
        }

        _clients.Add(client);
        if (start)
        {
            await client.StartAsync();
        }

        return client;
    }

    public Task<AgentDefinition> AgentAsync(Func<AgentDefinition, AgentDefinition>? configure = null)
    {
        var agent = new AgentDefinition
        {
            Name = "agent_" + Guid.NewGuid().ToString("N")[..10],
            Model = "claude-sonnet-4-5",
            SystemPrompt = "You are a test agent.",
        };
        return Client.CreateAgentAsync(configure is null ? agent : configure(agent));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients)
        {
            await client.DisposeAsync();
        }

        await Claude.DisposeAsync();
    }
}
