using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Hosting;
using AgentPg.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace AgentPg.Tests.EntityFrameworkCore;

public sealed class DbContextTransactionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private ShopDb NewShop() => new(ShopDb.Options(db.DataSource), new ShopSchema(db.Schema));

    [DatabaseFact]
    public async Task RunFastAsync_DbContextTransactionCommits_OrderSessionAndRunAllExist()
    {
        await using var client = db.CreateClient();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "ef_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        await using var shop = NewShop();
        await ShopDb.CreateTablesAsync(shop);
        var order = new ShopOrder { Id = Guid.NewGuid(), Item = "committed" };

        await using (var tx = await shop.Database.BeginTransactionAsync())
        {
            shop.Orders.Add(order);
            await shop.SaveChangesAsync();
            var session = await client.NewSessionAsync(shop);
            var fast = await client.RunFastAsync(shop, session, agent.Id, "check order " + order.Id);
            var batch = await client.RunAsync(shop, session, agent.Id, "and in batch");
            await tx.CommitAsync();

            Assert.Equal(RunMode.Streaming, (await client.GetRunAsync(fast)).RunMode);
            Assert.Equal(RunMode.Batch, (await client.GetRunAsync(batch)).RunMode);
            Assert.Equal(session, (await client.GetRunAsync(fast)).SessionId);
        }

        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.shop_orders WHERE id = $1", order.Id));
    }

    [DatabaseFact]
    public async Task RunFastAsync_DbContextTransactionRollsBack_NothingExists()
    {
        await using var client = db.CreateClient();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "ef_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        await using var shop = NewShop();
        await ShopDb.CreateTablesAsync(shop);
        var order = new ShopOrder { Id = Guid.NewGuid(), Item = "rolled back" };
        Guid session, run;

        await using (var tx = await shop.Database.BeginTransactionAsync())
        {
            shop.Orders.Add(order);
            await shop.SaveChangesAsync();
            session = await client.NewSessionAsync(shop);
            run = await client.RunFastAsync(shop, session, agent.Id, "check order " + order.Id);
            await tx.RollbackAsync();
        }

        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.shop_orders WHERE id = $1", order.Id));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = $1", session));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = $1", run));
    }

    [DatabaseFact]
    public async Task ApproveAndRejectToolCallAsync_DbContextTransaction_DecisionCommitsWithTheOrderOrNotAtAll()
    {
        await using var h = await Harness.StartAsync(db, tools: new TestTool("ship", (_, input, _) => Task.FromResult("shipped " + input.GetProperty("item").GetString())));
        var agent = await h.AgentAsync(a => a with { Tools = ["ship"], ToolsRequiringApproval = ["ship"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.ToolUse("ship", new { item = r.LastUserText }) with { StopReason = "tool_use" }
            : FakeReply.Text((r.ToolResults[0].IsError ? "not shipped: " : "") + r.ToolResults[0].Content));
        await using var shop = NewShop();
        await ShopDb.CreateTablesAsync(shop);

        async Task<(Guid Run, ToolApprovalRequest Request)> WaitingAsync(string item)
        {
            var session = await h.Client.NewSessionAsync();
            var run = await h.Client.RunFastAsync(session, agent.Id, item);
            ToolApprovalRequest? request = null;
            await Eventually.TrueAsync(async () => (request = await h.Client.GetPendingApprovalsAsync(session) is [var first, ..] ? first : null) is not null,
                "the ship call waits for approval");
            return (run, request!);
        }

        var (approvedRun, approved) = await WaitingAsync("book");
        var rolledBack = new ShopOrder { Id = Guid.NewGuid(), Item = "rolled back" };
        await using (var tx = await shop.Database.BeginTransactionAsync())
        {
            shop.Orders.Add(rolledBack);
            await shop.SaveChangesAsync();
            await h.Client.ApproveToolCallAsync(shop, approved.ToolExecutionId, comment: "rolled back");
            await tx.RollbackAsync();
        }

        Assert.Equal(RunState.PendingTools, (await h.Client.GetRunAsync(approvedRun)).State);
        Assert.Single(await h.Client.GetPendingApprovalsAsync(approved.SessionId));
        shop.ChangeTracker.Clear();
        var order = new ShopOrder { Id = Guid.NewGuid(), Item = "book" };
        await using (var tx = await shop.Database.BeginTransactionAsync())
        {
            shop.Orders.Add(order);
            await shop.SaveChangesAsync();
            await h.Client.ApproveToolCallAsync(shop, approved.ToolExecutionId, JsonSerializer.SerializeToElement(new { item = "book (gift wrapped)" }),
                "wrap it", "erin");
            await tx.CommitAsync();
        }

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(approvedRun), "the approved run", TimeSpan.FromSeconds(60));
        // The edited input is announced to Claude ahead of the tool's output (docs/approvals.md).
        Assert.StartsWith("The approver changed the input of this call before it ran;", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("\n\nshipped book (gift wrapped)", response.Text, StringComparison.Ordinal);
        Assert.Equal("erin", Assert.Single(response.ToolCalls).Approval!.DecidedBy);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.shop_orders WHERE id = $1", order.Id));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.shop_orders WHERE id = $1", rolledBack.Id));

        var (rejectedRun, rejected) = await WaitingAsync("lamp");
        await using (var tx = await shop.Database.BeginTransactionAsync())
        {
            await h.Client.RejectToolCallAsync(shop, rejected.ToolExecutionId, "out of stock", "erin");
            await tx.CommitAsync();
        }

        var rejectedResponse = await Eventually.WithinAsync(h.Client.WaitForRunAsync(rejectedRun), "the rejected run", TimeSpan.FromSeconds(60));
        Assert.Equal("not shipped: The tool call was rejected by the approver: out of stock", rejectedResponse.Text);
    }

    [DatabaseFact]
    public async Task DbContextOverloads_NoCurrentTransaction_ThrowSayingToBeginOne()
    {
        await using var client = db.CreateClient();
        await using var shop = NewShop();

        var errors = new[]
        {
            await Assert.ThrowsAsync<InvalidOperationException>(() => client.NewSessionAsync(shop)),
            await Assert.ThrowsAsync<InvalidOperationException>(() => client.RunAsync(shop, Guid.NewGuid(), Guid.NewGuid(), "x")),
            await Assert.ThrowsAsync<InvalidOperationException>(() => client.RunFastAsync(shop, Guid.NewGuid(), Guid.NewGuid(), "x")),
            await Assert.ThrowsAsync<InvalidOperationException>(() => client.ApproveToolCallAsync(shop, Guid.NewGuid())),
            await Assert.ThrowsAsync<InvalidOperationException>(() => client.RejectToolCallAsync(shop, Guid.NewGuid(), "x")),
        };

        Assert.All(errors, e => Assert.Contains("Database.BeginTransactionAsync()", e.Message, StringComparison.Ordinal));
    }

    [DatabaseFact]
    public async Task UseToolTransaction_ToolFailsAfterItsEfWriteOnTheFirstAttempt_LeavesExactlyOneRow()
    {
        await using (var shop = NewShop())
        {
            await ShopDb.CreateTablesAsync(shop);
        }

        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("record_in_ef", new { note = "paid" }) : FakeReply.Text(r.ToolResults[0].Content));
        var agentName = "ef_tool_" + Guid.NewGuid().ToString("N")[..8];
        var builder = HostFactory.Builder();
        builder.Services.AddSingleton(new ShopSchema(db.Schema));
        builder.Services.AddDbContext<ShopDb>((sp, o) => o.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>())
            .ReplaceService<IModelCacheKeyFactory, ShopDb.SchemaCacheKey>());
        builder.Services.AddAgentPg(HostFactory.Options(db, claude))
            .AddWorker()
            .AddTool<RecordInEfTool>()
            .AddAgent(new AgentDefinition { Name = agentName, Model = "claude-sonnet-4-5", Tools = ["record_in_ef"] });
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var client = host.Services.GetRequiredService<AgentPgClient>();
            var agent = await client.GetAgentByNameAsync(agentName);
            var run = await client.RunFastAsync(await client.NewSessionAsync(), agent.Id, "record it");

            var response = await Eventually.WithinAsync(client.WaitForRunAsync(run), "the run to complete after the tool's retry",
                TimeSpan.FromSeconds(90));

            Assert.Equal("recorded paid on attempt 2", response.Text);
            var execution = (await client.GetRunToolCallsAsync(run)).Single();
            Assert.False(execution.IsError);
            Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.shop_effects"));
            Assert.Equal(2, await db.ScalarAsync<int>("SELECT attempt FROM {schema}.shop_effects"));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [DatabaseFact]
    public async Task ContextWithEnableRetryOnFailure_TheDocumentedPatterns_WriteInsideTheExecutionStrategy()
    {
        // A retrying execution strategy (EnableRetryOnFailure, on by default in Aspire's AddNpgsqlDbContext) refuses
        // SaveChanges in a transaction begun outside it; the README shows how to run the writes inside it, for a tool's
        // transaction and for the application's own.
        await using (var shop = NewShop())
        {
            await ShopDb.CreateTablesAsync(shop);
        }

        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("record_retrying", new { }) : FakeReply.Text(r.ToolResults[0].Content));
        var agentName = "ef_retrying_" + Guid.NewGuid().ToString("N")[..8];
        var builder = HostFactory.Builder();
        builder.Services.AddSingleton(new ShopSchema(db.Schema));
        builder.Services.AddDbContext<ShopDb>((sp, o) => o.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>(), n => n.EnableRetryOnFailure())
            .ReplaceService<IModelCacheKeyFactory, ShopDb.SchemaCacheKey>());
        builder.Services.AddAgentPg(HostFactory.Options(db, claude))
            .AddWorker()
            .AddTool<RecordWithRetryingStrategyTool>()
            .AddAgent(new AgentDefinition { Name = agentName, Model = "claude-sonnet-4-5", Tools = ["record_retrying"] });
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var client = host.Services.GetRequiredService<AgentPgClient>();
            var agent = await client.GetAgentByNameAsync(agentName);
            await using var scope = host.Services.CreateAsyncScope();
            var shop = scope.ServiceProvider.GetRequiredService<ShopDb>();
            var order = new ShopOrder { Id = Guid.NewGuid(), Item = "retrying" };
            var run = Guid.Empty;

            await shop.Database.CreateExecutionStrategy().ExecuteAsync(async () =>
            {
                await using var tx = await shop.Database.BeginTransactionAsync();
                shop.Orders.Add(order);
                await shop.SaveChangesAsync();
                run = await client.RunFastAsync(shop, await client.NewSessionAsync(shop), agent.Id, "record order " + order.Id);
                await tx.CommitAsync();
            });
            var response = await Eventually.WithinAsync(client.WaitForRunAsync(run), "the run and its EF tool to complete");

            Assert.Equal("recorded", response.Text);
            Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.shop_orders WHERE id = $1", order.Id));
            Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.shop_effects WHERE note = 'retrying'"));
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [DatabaseFact]
    public async Task UseToolTransaction_ToolWithoutTransaction_ThrowsSayingToImplementITransactionalTool()
    {
        await using var h = await Harness.StartAsync(db, o => o.ToolRetry.MaxAttempts = 1,
            tools: new TestTool("plain_ef", (context, _, _) =>
            {
                using var shop = NewShop();
                shop.UseToolTransaction(context);
                return Task.FromResult("unreachable");
            }));
        var agent = await h.AgentAsync(a => a with { Tools = ["plain_ef"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("plain_ef", new { }) : FakeReply.Text(r.ToolResults[0].Content));

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to finish");

        Assert.Contains("ITransactionalTool", response.Text, StringComparison.Ordinal);
    }

    /// <summary>Writes through a context whose execution strategy retries: inside the strategy, as the README shows.</summary>
    public sealed class RecordWithRetryingStrategyTool(ShopDb shop) : ITransactionalTool
    {
        public string Name => "record_retrying";

        public string Description => "Records an effect with EF Core (retrying execution strategy).";

        public ToolSchema InputSchema { get; } = new();

        public async Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
        {
            await shop.Database.CreateExecutionStrategy().ExecuteAsync(async ct =>
            {
                shop.UseToolTransaction(context);
                shop.Effects.Add(new ShopEffect { ExecutionId = context.ToolExecutionId, Attempt = context.Attempt, Note = "retrying" });
                await shop.SaveChangesAsync(ct);
            }, cancellationToken);
            return "recorded";
        }
    }

    /// <summary>Writes through EF Core in its exactly-once transaction, then fails on the first attempt.</summary>
    public sealed class RecordInEfTool(ShopDb shop) : ITransactionalTool
    {
        public string Name => "record_in_ef";

        public string Description => "Records a note with EF Core.";

        public ToolSchema InputSchema { get; } = new()
        {
            Properties = new Dictionary<string, PropertyDef> { ["note"] = new() { Type = "string" } },
            Required = ["note"],
        };

        public async Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
        {
            var note = input.GetProperty("note").GetString()!;
            shop.UseToolTransaction(context);
            shop.Effects.Add(new ShopEffect { ExecutionId = context.ToolExecutionId, Attempt = context.Attempt, Note = note });
            await shop.SaveChangesAsync(cancellationToken);
            if (context.Attempt == 1)
            {
                throw new InvalidOperationException("payment gateway timed out after the write");
            }

            return $"recorded {note} on attempt {context.Attempt}";
        }
    }
}
