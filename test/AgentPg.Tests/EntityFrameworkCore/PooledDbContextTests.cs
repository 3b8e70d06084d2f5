using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Hosting;
using AgentPg.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace AgentPg.Tests.EntityFrameworkCore;

/// <summary>A context pool (<c>AddDbContextPool</c>) hands the same context instance to the next scope: what a tool's
/// <c>UseToolTransaction</c> did to it must not follow it there.</summary>
public sealed class PooledDbContextTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task UseToolTransaction_PooledContext_TheNextLeaseUsesAConnectionOfItsOwn(bool onDataSource)
    {
        await using (var shop = new ShopDb(ShopDb.Options(db.DataSource), new ShopSchema(db.Schema)))
        {
            await ShopDb.CreateTablesAsync(shop);
            var clear = "DELETE FROM \"" + db.Schema + "\".shop_effects"; // each case counts its own rows
            await shop.Database.ExecuteSqlRawAsync(clear);
        }

        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("record_pooled", new { }) : FakeReply.Text(r.ToolResults[0].Content));
        var agentName = "ef_pooled_" + Guid.NewGuid().ToString("N")[..8];
        var builder = HostFactory.Builder();
        builder.Services.AddSingleton(new ShopSchema(db.Schema));
        // One context in the pool: every lease is the same instance.
        // A context on the container's data source, or on a connection string of its own.
        builder.Services.AddDbContextPool<PooledDb>((sp, o) =>
        {
            if (onDataSource)
            {
                o.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>());
            }
            else
            {
                o.UseNpgsql(TestDatabase.ConnectionString);
            }
        }, poolSize: 1);
        builder.Services.AddAgentPg(HostFactory.Options(db, claude))
            .AddWorker()
            .AddTool<RecordPooledTool>()
            .AddAgent(new AgentDefinition { Name = agentName, Model = "claude-sonnet-4-5", Tools = ["record_pooled"] });
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var client = host.Services.GetRequiredService<AgentPgClient>();
            var agent = await client.GetAgentByNameAsync(agentName);
            var first = await Eventually.WithinAsync(client.RunFastSyncAsync(await client.NewSessionAsync(), agent.Id, "record it"), "the first run");
            Assert.Equal("recorded", first.Text);

            await using (var scope = host.Services.CreateAsyncScope())
            {
                // The application's own use of the pooled context after the tool's lease: a query and a transaction of its own.
                var pooled = scope.ServiceProvider.GetRequiredService<PooledDb>();
                var count = "SELECT count(*)::int AS \"Value\" FROM \"" + db.Schema + "\".shop_effects";
                Assert.Equal(1, await pooled.Database.SqlQueryRaw<int>(count).SingleAsync());
                await using var tx = await pooled.Database.BeginTransactionAsync();
                await pooled.Database.ExecuteSqlRawAsync(Insert(db.Schema), Guid.NewGuid(), 0, "app");
                await tx.CommitAsync();
            }

            // And a second tool execution leases it again.
            var second = await Eventually.WithinAsync(client.RunFastSyncAsync(await client.NewSessionAsync(), agent.Id, "record it again"), "the second run");
            Assert.Equal("recorded", second.Text);
            Assert.Equal(3L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.shop_effects "));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    private static string Insert(string schema) => "INSERT INTO \"" + schema + "\".shop_effects VALUES ({0}, {1}, {2})";

    /// <summary>A poolable context: its only constructor parameter is the options.</summary>
    public sealed class PooledDb(DbContextOptions<PooledDb> options) : DbContext(options);

    public sealed class RecordPooledTool(PooledDb pooled, ShopSchema schema) : ITransactionalTool
    {
        public string Name => "record_pooled";

        public string Description => "Records an effect through a pooled EF Core context.";

        public ToolSchema InputSchema { get; } = new();

        public async Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
        {
            pooled.UseToolTransaction(context);
            await pooled.Database.ExecuteSqlRawAsync(Insert(schema.Name), [context.ToolExecutionId, context.Attempt, "pooled"], cancellationToken);
            return "recorded";
        }
    }
}
