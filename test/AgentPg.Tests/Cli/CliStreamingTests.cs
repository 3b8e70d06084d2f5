using System.Net;
using System.Text.Json;
using System.Text.RegularExpressions;
using AgentPg.Cli;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Cli;

/// <summary>The agentpg commands that stream through WatchRunAsync: runs watch and chat (scripted through redirected input).</summary>
public sealed partial class CliStreamingTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [DatabaseFact]
    public async Task RunsWatch_LiveRunWithToolCall_StreamsTextToolCallsAndEndsWithTheRun()
    {
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("lookup", (_, _, _) => Task.FromResult("found 42"))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"] });
        var release = new TaskCompletionSource();
        h.Claude.Respond(async (r, cancellationToken) =>
        {
            if (r.ToolResults.Count == 0)
            {
                return FakeReply.ToolUse("lookup", new { });
            }

            await release.Task.WaitAsync(cancellationToken);
            return FakeReply.Text("The answer is " + r.ToolResults[0].Content);
        });
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "look it up");

        var watching = CliRunner.RunAsync(db.Schema, "runs", "watch", runId.ToString());
        await Eventually.TrueAsync(async () => (await h.Client.GetRunToolCallsAsync(runId)).Any(c => c.State == ToolExecutionState.Completed), "the lookup completed", s_timeout);
        Assert.False(watching.IsCompleted, "runs watch ended before the run did");
        release.SetResult();
        var result = await watching.WaitAsync(s_timeout);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("[tool] lookup {}", result.Output, StringComparison.Ordinal);
        Assert.Contains("[tool] lookup → found 42", result.Output, StringComparison.Ordinal);
        Assert.Contains("The answer is found 42", result.Output, StringComparison.Ordinal);
        Assert.Contains("[finished] completed", result.Output, StringComparison.Ordinal);

        // A finished run replays; --json writes one event per line.
        var json = await CliRunner.RunAsync(db.Schema, "runs", "watch", runId.ToString(), "--json");
        Assert.True(json.ExitCode == 0, json.ToString());
        var events = json.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.Clone()).ToList();
        Assert.Contains(events, e => e.GetProperty("type").GetString() == "ToolCallStartedEvent" && e.GetProperty("toolName").GetString() == "lookup");
        Assert.Equal("RunFinishedEvent", events[^1].GetProperty("type").GetString());
        Assert.Equal("Completed", events[^1].GetProperty("state").GetString());

        var unknown = await CliRunner.RunAsync(db.Schema, "runs", "watch", Guid.NewGuid().ToString());
        Assert.True(unknown.ExitCode == 1 && unknown.Error.StartsWith("error: Run ", StringComparison.Ordinal), unknown.ToString());
    }

    [DatabaseFact]
    public async Task Chat_FakeWithRedirectedInput_ThreeTurnsWithToolCalls()
    {
        Assert.True(string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY")), "this test runs chat --fake, which uses Claude when ANTHROPIC_API_KEY is set: unset it");
        var agentName = "chat_" + Guid.NewGuid().ToString("N")[..8];
        const string script = "Hello there\nWhat's the weather in Paris?\n\nWhat is 17 * 23?\n/exit\nnever read\n";

        var result = await CliRunner.RunRawAsync(["--connection", TestDatabase.ConnectionString, "--schema", db.Schema, "chat", "--fake", "--agent", agentName], script)
            .WaitAsync(TimeSpan.FromMinutes(2));

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("You said: \"Hello there\"", result.Output, StringComparison.Ordinal);
        Assert.Contains("[tool] get_weather {\"city\":\"Paris\"}", result.Output, StringComparison.Ordinal);
        Assert.Contains("[tool] calculate {\"expression\":\"17 * 23\"}", result.Output, StringComparison.Ordinal);
        Assert.Contains("[tool] calculate → 391", result.Output, StringComparison.Ordinal);
        Assert.Contains("calculate returned \"391\"", result.Output, StringComparison.Ordinal);
        Assert.Contains("Bye. 3 turn(s)", result.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("never read", result.Output, StringComparison.Ordinal);

        // Everything is stored: three completed runs in the chat's session, which --session continues.
        var session = Guid.Parse(SessionPattern().Match(result.Output).Groups[1].Value);
        await using var client = db.CreateClient();
        var runs = await client.ListRunsAsync(new RunQuery { SessionId = session, Limit = 10 });
        Assert.Equal(3, runs.Items.Count);
        Assert.All(runs.Items, r => Assert.Equal(RunState.Completed, r!.State));
        var resumed = await CliRunner.RunRawAsync(["--connection", TestDatabase.ConnectionString, "--schema", db.Schema, "chat", "--fake", "--agent", agentName,
            "--session", session.ToString()], "Hello again\n").WaitAsync(TimeSpan.FromMinutes(2));
        Assert.True(resumed.ExitCode == 0, resumed.ToString());
        Assert.Equal(4, (await client.ListRunsAsync(new RunQuery { SessionId = session, Limit = 10 })).Items.Count);
    }

    [DatabaseFact]
    public async Task Chat_UnknownAgentWithoutFake_OneLineError()
    {
        var result = await CliRunner.RunAsync(db.Schema, "chat", "--agent", "no_such_agent_" + Guid.NewGuid().ToString("N")[..6]);

        Assert.True(result.ExitCode == 1, result.ToString());
        Assert.StartsWith("error: ", result.Error, StringComparison.Ordinal);
        Assert.Contains("no_such_agent_", result.Error, StringComparison.Ordinal);
    }

    [GeneratedRegex(@"in session ([0-9a-f-]{36})")]
    private static partial Regex SessionPattern();

}
