using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Tools;

/// <summary><see cref="AgentPgOptions.MaxToolOutputLength"/>: a tool's huge output (or error message) reaches Claude and the
/// database cut, with a line that says so, instead of filling the context window of every later request of the session.</summary>
public sealed class ToolOutputLimitTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly string s_log = string.Concat(Enumerable.Range(0, 15_000).Select(i => $"line{i:D5}\n"));

    private static void ScriptOneCall(FakeClaudeServer claude, string tool, List<FakeToolResult> received)
        => claude.Respond(request =>
        {
            if (request.ToolResults.Count == 0)
            {
                return FakeReply.ToolUse(tool, new { });
            }

            lock (received)
            {
                received.AddRange(request.ToolResults);
            }

            return FakeReply.Text("read it");
        });

    [DatabaseFact]
    public async Task HugeOutput_IsCutAtTheDefaultLimit_ForClaudeAndInTheDatabase_WithALineThatSaysSo()
    {
        Assert.Equal(150_000, s_log.Length);
        await using var h = await Harness.StartAsync(db, null, start: true, new TestTool("dump", (_, _, _) => Task.FromResult(s_log)));
        var agent = await h.AgentAsync(a => a with { Tools = null });
        var received = new List<FakeToolResult>();
        ScriptOneCall(h.Claude, "dump", received);

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "show the log");

        var expected = s_log[..100_000] + "\n[… 50,000 more characters not shown: a tool's output is limited to 100,000 characters]";
        Assert.Equal(expected, Assert.Single(received).Content);
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Completed, call.State);
        Assert.Equal(expected, call.Output);
    }

    [DatabaseFact]
    public async Task WithoutALimit_TheWholeOutputIsSent()
    {
        await using var h = await Harness.StartAsync(db, o => o.MaxToolOutputLength = null, start: true, new TestTool("dump", (_, _, _) => Task.FromResult(s_log)));
        var agent = await h.AgentAsync(a => a with { Tools = null });
        var received = new List<FakeToolResult>();
        ScriptOneCall(h.Claude, "dump", received);

        await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "show the log");

        Assert.Equal(s_log, Assert.Single(received).Content);
    }

    [DatabaseFact]
    public async Task HugeErrorMessage_IsCutLikeAnOutput()
    {
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.MaxToolOutputLength = 2_000;
            o.ToolRetry.MaxAttempts = 1;
        }, start: true, new TestTool("fail", (_, _, _) => throw new InvalidOperationException(s_log)));
        var agent = await h.AgentAsync(a => a with { Tools = null });
        var received = new List<FakeToolResult>();
        ScriptOneCall(h.Claude, "fail", received);

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "try it");

        var expected = s_log[..2_000] + "\n[… 148,000 more characters not shown: a tool's output is limited to 2,000 characters]";
        var result = Assert.Single(received);
        Assert.True(result.IsError);
        Assert.Equal(expected, result.Content);
        Assert.Equal(expected, Assert.Single(response.ToolCalls).ErrorMessage);
    }
}
