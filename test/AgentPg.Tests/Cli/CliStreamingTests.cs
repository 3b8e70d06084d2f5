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

        // The tool call shows while the run is still going (the final answer is held).
        var watching = LiveCliRun.Start(db.Schema, "runs", "watch", runId.ToString());
        await Eventually.TrueAsync(() =>
        {
            Assert.False(watching.Completion.IsCompleted, $"runs watch ended before the run did: {watching.Output}");
            return watching.Output.Contains("[tool] lookup → found 42", StringComparison.Ordinal);
        }, "runs watch shows the completed lookup live", s_timeout);
        Assert.DoesNotContain("[finished]", watching.Output, StringComparison.Ordinal);
        release.SetResult();
        var result = await watching.Completion.WaitAsync(s_timeout);

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
    public async Task RunsWatch_ADelegatedRun_ShowsItsOwnAnswer()
    {
        await using var h = await Harness.StartAsync(db);
        var child = await h.AgentAsync(a => a with { SystemPrompt = "You are the child." });
        var parent = await h.AgentAsync(a => a with { SystemPrompt = "You are the parent.", AgentIds = [child.Id] });
        h.Claude.Respond(request => request.SystemText.Contains("the child", StringComparison.Ordinal)
            ? FakeReply.Text("the child's own answer")
            : request.ToolResults.Count == 0
                ? FakeReply.ToolUse(child.Name, new { task = "sub task" }) with { StopReason = "tool_use" }
                : FakeReply.Text("the parent's answer"));
        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), parent.Id, "go").WaitAsync(s_timeout);
        var childRun = Assert.Single(response.ToolCalls).ChildRunId!.Value;

        // WatchRunAsync takes a child run as well as a root run: its text is the watched run's, not the root's.
        var result = await CliRunner.RunAsync(db.Schema, "runs", "watch", childRun.ToString());

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("the child's own answer", result.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("the parent's answer", result.Output, StringComparison.Ordinal);
        Assert.Contains("\n[finished] completed", result.Output, StringComparison.Ordinal);
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
        foreach (var expected in (string[])["You said: \"Hello there\"", "[tool] get_weather {\"city\":\"Paris\"}", "[tool] calculate {\"expression\":\"17 * 23\"}",
                     "[tool] calculate → 391", "calculate returned \"391\"", "Bye. 3 turn(s)"])
        {
            Assert.True(result.Output.Contains(expected, StringComparison.Ordinal), $"missing {expected}\n{result}");
        }

        Assert.DoesNotContain("never read", result.Output, StringComparison.Ordinal);

        // Everything is stored: three completed runs in the chat's session, which --session continues.
        var session = Guid.Parse(SessionPattern().Match(result.Output).Groups[1].Value);
        await using var client = db.CreateClient();
        var runs = await client.ListRunsAsync(new RunQuery { SessionId = session, Limit = 10 });
        Assert.Equal(3, runs.Items.Count);
        Assert.All(runs.Items, r => Assert.Equal(RunState.Completed, r!.State));
        var history = await client.GetMessagesAsync(session);
        var prompts = history.Where(m => m.Role == MessageRole.User).SelectMany(m => m.Content).Where(b => b.Type == ContentTypes.Text).Select(b => b.Text).ToList();
        Assert.Equal(["Hello there", "What's the weather in Paris?", "What is 17 * 23?"], prompts);
        Assert.Contains(history, m => m.Role == MessageRole.Assistant && m.Content.Any(b => b.ToolName == "get_weather"));
        Assert.Contains(history, m => m.Role == MessageRole.User && m.Content.Any(b => b.ToolContent == "391"));
        Assert.Contains(history, m => m.Role == MessageRole.Assistant && m.Content.Any(b => b.Text?.Contains("calculate returned \"391\"", StringComparison.Ordinal) == true));
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

    [DatabaseFact]
    public async Task Chat_CtrlCDuringAnAnswer_CancelsTheRunAndKeepsChatting()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var held = new HeldRequest(h.Claude, "think hard", _ => FakeReply.Text("never shown"));
        var interrupts = new CliInterrupts();

        var chatting = CliRunner.RunRawAsync(["--connection", TestDatabase.ConnectionString, "--schema", db.Schema, "chat", "--agent", agent.Name],
            "think hard\n", interrupts);
        await held.Arrived.WaitAsync(s_timeout);
        Assert.True(interrupts.Press(), "chat handles the first Ctrl+C");
        var result = await chatting.WaitAsync(s_timeout);

        // The run is cancelled in the database; the chat reports it and goes on (here: to the end of its input).
        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains("[run] cancelled", result.Output, StringComparison.Ordinal);
        Assert.Contains("Bye. 1 turn(s)", result.Output, StringComparison.Ordinal);
        Assert.Contains("cancelling the run", result.Error, StringComparison.Ordinal);
        var run = Assert.Single((await h.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items);
        Assert.Equal(RunState.Cancelled, run!.State);
        Assert.DoesNotContain("never shown", result.Output, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Chat_CtrlCThenCtrlCAtThePrompt_CancelsTheRunThenExits()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var interrupts = new CliInterrupts();
        using var input = new TypedInput();

        // No worker: the run stays pending, the chat waits for it.
        var chatting = LiveCliRun.Start(db.Schema, input, interrupts, "chat", "--agent", agent.Name);
        input.Type("anyone there?");
        Run? pending = null;
        await Eventually.TrueAsync(async () =>
        {
            pending = (await h.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items.SingleOrDefault();
            return pending is not null;
        }, "chat created its run", s_timeout);
        Assert.True(interrupts.Press(), "chat handles the first Ctrl+C");
        await Eventually.TrueAsync(() =>
        {
            Assert.False(chatting.Completion.IsCompleted, $"chat ended at the first Ctrl+C: {chatting.Output}");
            return chatting.Output.EndsWith("[run] cancelled: Run cancelled by user\n> ", StringComparison.Ordinal);
        }, "chat reports the cancelled run and prompts again", s_timeout);
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(pending!.Id)).State);

        Assert.True(interrupts.Press(), "chat handles the second Ctrl+C");
        var result = await chatting.Completion.WaitAsync(s_timeout);

        Assert.True(result.ExitCode == 130, result.ToString());
        Assert.Contains("Bye. 1 turn(s)", result.Output, StringComparison.Ordinal);
        Assert.Single((await h.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items);
    }

    [DatabaseFact]
    public async Task Chat_CtrlCTwiceDuringARun_CancelsTheRunAndExits()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var interrupts = new CliInterrupts();
        using var input = new TypedInput();
        var chatting = LiveCliRun.Start(db.Schema, input, interrupts, "chat", "--agent", agent.Name);
        input.Type("anyone there?");
        await Eventually.TrueAsync(async () => (await h.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items.Count == 1, "chat created its run", s_timeout);

        // Both presses before the cancellation reached the stream: the chat exits, the run is cancelled all the same.
        Assert.True(interrupts.Press());
        Assert.True(interrupts.Press());
        var result = await chatting.Completion.WaitAsync(s_timeout);

        Assert.True(result.ExitCode == 130, result.ToString());
        Assert.Contains("Bye. 1 turn(s)", result.Output, StringComparison.Ordinal);
        Assert.Equal(RunState.Cancelled, Assert.Single((await h.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items).State);
    }

    [DatabaseFact]
    public async Task Chat_SecondCtrlCAfterTheCancelledRunsStreamEnded_ExitsTheChat()
    {
        // The second press lands after the first one's cancellation ended the run's stream, before the turn is over (under
        // load, the presses of the test above can be that far apart): the terminal holds the flush of the run's last line
        // until the second press is made.
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var interrupts = new CliInterrupts();
        using var input = new TypedInput();
        using var output = new HeldFlushWriter("[run] cancelled");
        using var error = new StringWriter();
        var chatting = CliApp.RunAsync(["--connection", TestDatabase.ConnectionString, "--schema", db.Schema, "chat", "--agent", agent.Name],
            output, TextWriter.Synchronized(error), input, interrupts);
        input.Type("anyone there?");
        await Eventually.TrueAsync(async () => (await h.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items.Count == 1, "chat created its run", s_timeout);

        Assert.True(interrupts.Press(), "chat handles the first Ctrl+C");
        await Eventually.WithinAsync(output.Held, "chat prints the cancelled run", s_timeout);
        Assert.True(interrupts.Press(), "chat handles the second Ctrl+C");
        output.Release();
        var exitCode = await Eventually.WithinAsync(chatting, "chat to exit after the second Ctrl+C", s_timeout);

        Assert.True(exitCode == 130, $"exit code {exitCode}\n{output}");
        Assert.Contains("Bye. 1 turn(s)", output.ToString(), StringComparison.Ordinal);
        Assert.Equal(RunState.Cancelled, Assert.Single((await h.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items).State);
    }

    [DatabaseFact]
    public async Task Chat_ToolCallNeedsApproval_AsksAndRunsItWhenApproved()
    {
        var refunds = 0;
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("issue_refund", (_, _, _) => Task.FromResult("refunded " + Interlocked.Increment(ref refunds)))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.ToolUse("issue_refund", new { order = "A-" + r.LastUserText })
            : FakeReply.Text("Result: " + r.ToolResults[0].Content));

        var result = await CliRunner.RunRawAsync(["--connection", TestDatabase.ConnectionString, "--schema", db.Schema, "chat", "--agent", agent.Name],
            "1\ny\n2\nnot today\n").WaitAsync(TimeSpan.FromMinutes(2));

        Assert.True(result.ExitCode == 0, result.ToString());
        foreach (var expected in (string[])["[approval] issue_refund {\"order\":\"A-1\"} waits for a decision", "Run issue_refund? y approves", "Result: refunded 1",
                     "[approval] issue_refund {\"order\":\"A-2\"} waits for a decision", "[tool] issue_refund failed: The tool call was rejected by the approver: not today", "Bye. 2 turn(s)"])
        {
            Assert.True(result.Output.Contains(expected, StringComparison.Ordinal), $"missing {expected}\n{result}");
        }

        Assert.Equal(1, refunds);
        var calls = (await h.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items;
        Assert.Equal(2, calls.Count);
        Assert.All(calls, r => Assert.Equal(RunState.Completed, r!.State));
    }

    [DatabaseFact]
    public async Task RunsWatch_ToolCallWaitingForApproval_ShowsIt()
    {
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("issue_refund", (_, _, _) => Task.FromResult("refunded"))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("issue_refund", new { order = "A-7" }) : FakeReply.Text("done: " + r.ToolResults[0].Content));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund A-7");

        var watching = LiveCliRun.Start(db.Schema, "runs", "watch", runId.ToString());
        await Eventually.TrueAsync(() =>
        {
            Assert.False(watching.Completion.IsCompleted, $"runs watch ended while the run waits for approval: {watching.Output}");
            return watching.Output.Contains("[approval]", StringComparison.Ordinal);
        }, "runs watch shows the tool call waiting for approval", s_timeout);
        var request = Assert.Single(await h.Client.GetPendingApprovalsAsync(session));
        await h.Client.ApproveToolCallAsync(request.ToolExecutionId);
        var result = await watching.Completion.WaitAsync(s_timeout);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Contains($"[approval] issue_refund {{\"order\":\"A-7\"}} waits for a decision (tool call {request.ToolExecutionId})", result.Output, StringComparison.Ordinal);
        Assert.Contains("[tool] issue_refund → refunded", result.Output, StringComparison.Ordinal);
        Assert.Contains("done: refunded", result.Output, StringComparison.Ordinal);

        // --json: the request is one of the events (ApprovalRequestedEvent), then the approved call runs.
        var json = await CliRunner.RunAsync(db.Schema, "runs", "watch", runId.ToString(), "--json");
        var types = json.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonDocument.Parse(l).RootElement.GetProperty("type").GetString()).ToList();
        Assert.True(types.IndexOf("ApprovalRequestedEvent") is >= 0 and var requested && types.IndexOf("ToolCallStartedEvent") > requested, json.ToString());
    }

    [DatabaseFact]
    public async Task RunsWatch_ARunWaitingForAnUnavailableClaude_ShowsTheWaitingLine()
    {
        // ModelUnavailableEvent's [waiting] line had no test: a watcher must see why a run is silent, not a hung command.
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var overloaded = 0;
        h.Claude.Respond(r => r.LastUserText != "wait for claude" ? FakeReply.Text("other")
            : Interlocked.Increment(ref overloaded) == 1 ? FakeReply.Error(529, "overloaded_error", "Overloaded", TimeSpan.FromMilliseconds(1))
            : FakeReply.Text("after the wait"));
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "wait for claude");

        // A wait is recorded for a run that is watched: start the worker once the watch has marked it.
        var watching = LiveCliRun.Start(db.Schema, "runs", "watch", runId.ToString());
        await Eventually.TrueAsync(async () =>
        {
            Assert.False(watching.Completion.IsCompleted, $"runs watch ended before the run started: {watching.Output}");
            return await db.ScalarAsync<bool>("SELECT watched FROM {schema}.agentpg_runs WHERE id = $1", runId);
        }, "runs watch registers its watch", s_timeout);
        await h.Client.StartAsync();
        var result = await watching.Completion.WaitAsync(s_timeout);

        Assert.True(result.ExitCode == 0, result.ToString());
        Assert.Matches(@"\[waiting\] Claude is unavailable \(Claude API error 529 overloaded_error: Overloaded\); trying again in [0-9.]+ m?s " +
            @"\(failing for [0-9.]+ m?s\)\n", result.Output);
        Assert.True(result.Output.IndexOf("[waiting]", StringComparison.Ordinal) < result.Output.IndexOf("after the wait", StringComparison.Ordinal),
            result.Output);
    }

    [GeneratedRegex(@"in session ([0-9a-f-]{36})")]
    private static partial Regex SessionPattern();

}
