using System.Text.Json;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Tools;

/// <summary>Review D20: users build a ToolContext to unit-test their tools.</summary>
public sealed class ToolContextTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private sealed record Tenant(int Id, string Name);

    [Fact]
    public void Create_WithVariables_ReadsThemLikeARun()
    {
        var execution = Guid.NewGuid();
        var run = Guid.NewGuid();
        var context = ToolContext.Create(
            new Dictionary<string, object?> { ["tenant"] = new Tenant(42, "acme"), ["limit"] = 5, ["note"] = null },
            attempt: 2, runId: run, toolExecutionId: execution, toolUseId: "toolu_1");

        Assert.Equal(new Tenant(42, "acme"), context.GetVariable<Tenant>("tenant"));
        Assert.Equal(5, context.GetVariable<int>("limit"));
        Assert.Equal(JsonValueKind.Null, context.Variables["note"].ValueKind);
        Assert.Equal(2, context.Attempt);
        Assert.Equal(run, context.RunId);
        Assert.Equal("toolu_1", context.ToolUseId);
        Assert.Equal("agentpg-tool-" + execution.ToString("N"), context.IdempotencyKey);
        Assert.Null(context.Transaction);
        Assert.Throws<KeyNotFoundException>(() => context.GetVariable<int>("missing"));
    }

    [Fact]
    public void Create_Defaults_AreUsable()
    {
        var context = ToolContext.Create();

        Assert.Empty(context.Variables);
        Assert.Equal(1, context.Attempt);
        Assert.NotEqual(Guid.Empty, context.RunId);
        Assert.StartsWith("toolu_", context.ToolUseId, StringComparison.Ordinal);
        Assert.Throws<ArgumentOutOfRangeException>(() => ToolContext.Create(attempt: 0));
        Assert.Throws<ArgumentException>(() => ToolContext.Create(new Dictionary<string, object?> { ["bad"] = new IntPtr(1) }));
    }

    [DatabaseFact]
    public async Task Create_WithATransaction_GivesItToTheTool()
    {
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        var context = ToolContext.Create(transaction: transaction);

        await using var command = new Npgsql.NpgsqlCommand("SELECT 1", context.Transaction!.Connection, context.Transaction);
        Assert.Equal(1, await command.ExecuteScalarAsync());
    }
}
