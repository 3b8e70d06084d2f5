using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>U+0000, which PostgreSQL cannot store: rejected with a clear error where the caller can fix it (prompts),
/// stored as U+FFFD where AgentPg must keep it (Claude's text and tool inputs, streamed or batched; tool outputs are
/// covered in ToolResultRecordingTests).</summary>
public sealed class NulCharacterTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    [DatabaseTheory]
    [InlineData("fast")]
    [InlineData("batch")]
    [InlineData("transaction")]
    public async Task Prompt_WithNul_IsRejectedWithThePositionAndNothingIsStored(string how)
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();

        var ex = await Assert.ThrowsAsync<ArgumentException>(async () =>
        {
            switch (how)
            {
                case "fast":
                    await h.Client.RunFastAsync(session, agent.Id, "ab\0c");
                    break;
                case "batch":
                    await h.Client.RunAsync(session, agent.Id, "ab\0c");
                    break;
                default:
                    await using (var connection = await db.DataSource.OpenConnectionAsync())
                    await using (var transaction = await connection.BeginTransactionAsync())
                    {
                        await h.Client.RunFastAsync(transaction, session, agent.Id, "ab\0c");
                    }

                    break;
            }
        });

        Assert.Equal("prompt", ex.ParamName);
        Assert.Contains("U+0000", ex.Message, StringComparison.Ordinal);
        Assert.Contains("at index 2", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));
    }

    [DatabaseFact]
    public async Task StreamedText_WithNul_IsStoredWithTheReplacementCharacter()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("a\0b"));
        var session = await h.Client.NewSessionAsync();

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "go"), "the run to end", s_timeout);

        Assert.Equal("a\uFFFDb", response.Text);
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.Equal("a\uFFFDb", messages[^1].Content[0].Text);
    }

    [DatabaseFact]
    public async Task BatchResult_WithNul_IsStoredWithTheReplacementCharacter()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("a\0b"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to end", s_timeout);

        Assert.Equal("a\uFFFDb", response.Text);
    }

    [DatabaseFact]
    public async Task ToolInput_WithNul_ReachesTheToolWithTheReplacementCharacter()
    {
        var received = new TaskCompletionSource<string>();
        await using var h = await Harness.StartAsync(db, tools: new TestTool("echo", (_, input, _) =>
        {
            var text = input.GetProperty("text").GetString()!;
            received.TrySetResult(text);
            return Task.FromResult(text);
        }));
        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text("echoed " + r.ToolResults[0].Content) : FakeReply.ToolUse("echo", new { text = "x\0y" }));

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to end", s_timeout);

        Assert.Equal("x\uFFFDy", await received.Task);
        Assert.Equal("echoed x\uFFFDy", response.Text);
        Assert.Equal("x\uFFFDy", Assert.Single(response.ToolCalls).Input.GetProperty("text").GetString());
    }
}
