using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Tools;

/// <summary>A tool execution whose result cannot be written ends anyway (review D1): retried or failed with a clear error,
/// and the run continues.</summary>
public sealed class ToolResultRecordingTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    /// <summary>Claude calls <paramref name="tool"/>, then answers with the tool result it got.</summary>
    private static void ScriptOneCall(FakeClaudeServer claude, string tool)
        => claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text($"result: {request.ToolResults[0].Content} error={request.ToolResults[0].IsError}")
            : FakeReply.ToolUse(tool, new { }));

    private async Task<(Harness H, Guid Session, AgentDefinition Agent)> SetUpAsync(Action<AgentPgOptions>? configure, params ITool[] tools)
    {
        var h = await Harness.StartAsync(db, configure, start: true, tools);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        return (h, await h.Client.NewSessionAsync(), agent);
    }

    private async Task<string> CreateTableAsync(string definition)
    {
        var name = "t_" + Guid.NewGuid().ToString("N")[..10];
        await db.ExecuteAsync($"CREATE TABLE {{schema}}.{name} {definition}");
        return $"\"{db.Schema}\".{name}";
    }

    private static async Task ExecuteAsync(ToolContext context, string sql, CancellationToken cancellationToken)
    {
        await using var command = new NpgsqlCommand(sql, context.Transaction!.Connection, context.Transaction);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    [DatabaseFact]
    public async Task TransactionalTool_CatchesItsOwnDatabaseError_FailsWithAClearErrorAndTheRunContinues()
    {
        var table = await CreateTableAsync("(id int PRIMARY KEY)");
        var calls = 0;
        var (h, session, agent) = await SetUpAsync(o => o.ToolRetry.MaxAttempts = 2, new TransactionalTool("book", async (ctx, _, ct) =>
        {
            Interlocked.Increment(ref calls);
            await ExecuteAsync(ctx, $"INSERT INTO {table} VALUES (1)", ct);
            try
            {
                await ExecuteAsync(ctx, $"INSERT INTO {table} VALUES (1)", ct);
            }
            catch (PostgresException)
            {
                return "duplicate";
            }

            return "booked";
        }));
        await using var scope = h;
        ScriptOneCall(h.Claude, "book");

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "book it"), "the run to end", s_timeout);

        Assert.Equal(2, calls);
        Assert.StartsWith("result: ", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Failed, call.State);
        Assert.Contains("transaction was aborted", call.ErrorMessage, StringComparison.Ordinal);
        Assert.Contains("ITransactionalTool", call.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM {table}"));
    }

    [DatabaseTheory]
    [InlineData("commit")]
    [InlineData("rollback")]
    public async Task TransactionalTool_EndsItsOwnTransaction_FailsWithoutRetryAndSaysWhy(string how)
    {
        var table = await CreateTableAsync("(id int)");
        var calls = 0;
        var (h, session, agent) = await SetUpAsync(o => o.ToolRetry.MaxAttempts = 3, new TransactionalTool("selfish", async (ctx, _, ct) =>
        {
            Interlocked.Increment(ref calls);
            await ExecuteAsync(ctx, $"INSERT INTO {table} VALUES (1)", ct);
            if (how == "commit")
            {
                await ctx.Transaction!.CommitAsync(ct);
            }
            else
            {
                await ctx.Transaction!.RollbackAsync(ct);
            }

            return "done";
        }));
        await using var scope = h;
        ScriptOneCall(h.Claude, "selfish");

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "go"), "the run to end", s_timeout);

        // Its writes may already be committed: running it again could do them twice.
        Assert.Equal(1, calls);
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Failed, call.State);
        Assert.Contains("committed or rolled back", call.ErrorMessage, StringComparison.Ordinal);
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task TransactionalTool_DeferredConstraintFailsAtCommit_IsRetriedThenFailsWithTheConstraintError()
    {
        var parent = await CreateTableAsync("(id int PRIMARY KEY)");
        var child = await CreateTableAsync($"(parent_id int REFERENCES {parent} (id) DEFERRABLE INITIALLY DEFERRED)");
        var calls = 0;
        var (h, session, agent) = await SetUpAsync(o => o.ToolRetry.MaxAttempts = 2, new TransactionalTool("orphan", async (ctx, _, ct) =>
        {
            Interlocked.Increment(ref calls);
            await ExecuteAsync(ctx, $"INSERT INTO {child} VALUES (42)", ct);
            return "inserted";
        }));
        await using var scope = h;
        ScriptOneCall(h.Claude, "orphan");

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "go"), "the run to end", s_timeout);

        Assert.Equal(2, calls);
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Failed, call.State);
        Assert.Contains("foreign key", call.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(0L, await db.ScalarAsync<long>($"SELECT count(*) FROM {child}"));
    }

    [DatabaseTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task ToolOutput_WithNul_IsStoredWithTheReplacementCharacter(bool transactional)
    {
        ITool tool = transactional
            ? new TransactionalTool("nul", (_, _, _) => Task.FromResult("a\0b"))
            : new TestTool("nul", (_, _, _) => Task.FromResult("a\0b"));
        var (h, session, agent) = await SetUpAsync(null, tool);
        await using var scope = h;
        ScriptOneCall(h.Claude, "nul");

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "go"), "the run to end", s_timeout);

        Assert.Equal("result: a\uFFFDb error=False", response.Text);
        Assert.Equal("a\uFFFDb", Assert.Single(response.ToolCalls).Output);
    }

    /// <summary>An <see cref="ITransactionalTool"/> made of a name and a function.</summary>
    private sealed class TransactionalTool(string name, Func<ToolContext, JsonElement, CancellationToken, Task<string>> execute) : ITransactionalTool
    {
        public string Name => name;

        public string Description => "A transactional test tool";

        public ToolSchema InputSchema { get; } = new();

        public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken) => execute(context, input, cancellationToken);
    }
}
