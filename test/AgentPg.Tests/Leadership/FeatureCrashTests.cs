using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Leadership;

/// <summary>The second-wave features (approvals, compaction, delegation, live streams) with real worker processes
/// (samples/WorkerHost) killed, and PostgreSQL restarted, at the moment that matters to each.</summary>
public sealed class FeatureCrashTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string SummarizerPrompt = "You summarise conversations";

    private Dictionary<string, string> Arguments(FakeClaudeServer claude, string name) => WorkerProcess.CrashTestArguments(TestDatabase.ConnectionString, db.Schema, claude, name);

    private static string Name(string prefix) => prefix + "_" + Guid.NewGuid().ToString("N")[..6];

    /// <summary>A parent agent that delegates "look it up" to a child agent, then answers with the child's answer. The child's
    /// first model call is <paramref name="firstChildCall"/> (it holds the call while the test acts on the worker); later ones
    /// answer "child answer to …".</summary>
    private static async Task<AgentDefinition> DelegatingAgentAsync(FakeClaudeServer claude, AgentPgClient producer,
        Func<CancellationToken, Task<FakeReply>> firstChildCall)
    {
        var childCalls = 0;
        claude.Respond(async (request, ct) =>
        {
            if (request.SystemText.StartsWith("Child", StringComparison.Ordinal))
            {
                return Interlocked.Increment(ref childCalls) == 1
                    ? await firstChildCall(ct)
                    : FakeReply.Text("child answer to " + request.LastUserText);
            }

            return request.ToolResults.Count > 0
                ? FakeReply.Text("parent got: " + request.ToolResults[0].Content)
                : FakeReply.Message(FakeContentBlock.ToolUse(request.Tools.Single().Name, new { task = "look it up" })) with { StopReason = "tool_use" };
        });
        var child = await producer.CreateAgentAsync(new AgentDefinition
        {
            Name = Name("child"), Description = "Looks things up.", Model = "m", SystemPrompt = "Child agent.", Tools = [],
        });
        var parent = await producer.CreateAgentAsync(new AgentDefinition
        {
            Name = Name("parent"), Model = "m", SystemPrompt = "Parent agent.", Tools = [], AgentIds = [child.Id],
        });
        return parent;
    }

    /// <summary>Every model call answers <paramref name="answer"/> once the test completes Release; Requested completes when a
    /// call arrives (the worker is inside its model call).</summary>
    private static (TaskCompletionSource Requested, TaskCompletionSource Release) HoldAnswer(FakeClaudeServer claude, string answer)
    {
        var requested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        claude.Respond(async (_, ct) =>
        {
            requested.TrySetResult();
            await release.Task.WaitAsync(ct);
            return FakeReply.Text(answer);
        });
        return (requested, release);
    }

    /// <summary>Answers every run's model call "noted: …", and the summarizer's calls "SUMMARY n" (n counts them); the first
    /// summary call is <paramref name="firstSummary"/> (it holds the call while the test acts on the worker). Returns the
    /// number of summary calls so far.</summary>
    private static Func<int> SummarizingClaude(FakeClaudeServer claude, Func<CancellationToken, Task<FakeReply>> firstSummary)
    {
        var summaries = 0;
        claude.Respond(async (request, ct) =>
        {
            if (!request.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal))
            {
                return FakeReply.Text("noted: " + request.LastUserText[..Math.Min(12, request.LastUserText.Length)]);
            }

            var summary = Interlocked.Increment(ref summaries);
            return summary == 1 ? await firstSummary(ct) : FakeReply.Text("SUMMARY " + summary);
        });
        return () => Volatile.Read(ref summaries);
    }

    /// <summary>A worker's arguments with auto-compaction at 4 000 tokens.</summary>
    private Dictionary<string, string> CompactingArguments(FakeClaudeServer claude, string name)
    {
        var arguments = Arguments(claude, name);
        arguments["auto-compaction"] = "4000";
        return arguments;
    }

    /// <summary>A first run over the compaction trigger on its own (nothing to compact yet), then a run whose request needs a
    /// compaction; returns the session and that second run.</summary>
    private static async Task<(Guid Session, Guid Run)> RunNeedingACompactionAsync(AgentPgClient producer, string agentPrefix)
    {
        var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = Name(agentPrefix), Model = "m", Tools = [] });
        var session = await producer.NewSessionAsync();
        await Eventually.WithinAsync(producer.WaitForRunAsync(await producer.RunFastAsync(session, agent.Id, "a long document: " + new string('d', 14_000))),
            "the first run");
        return (session, await producer.RunFastAsync(session, agent.Id, "and now?"));
    }

    private async Task CreateEffectsTableAsync()
        => await db.ExecuteAsync("CREATE TABLE IF NOT EXISTS {schema}.tool_effects (execution_id uuid, run_id uuid, effect text, attempt int, created_at timestamptz DEFAULT now())");

    [DatabaseFact]
    public async Task Approval_WorkerKilledWhileWaiting_DecidedWithNoWorkerAlive_ToolRunsExactlyOnceOnTheNextInstance()
    {
        await CreateEffectsTableAsync();
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text("done: " + request.ToolResults[0].Content)
            : FakeReply.Message(FakeContentBlock.ToolUse("record_effect", new { effect = request.LastUserText })) with { StopReason = "tool_use" });
        var first = await WorkerProcess.StartAsync(Arguments(claude, "first"));
        await using var firstWorker = first;
        await using var producer = db.CreateClient();
        var agent = await producer.CreateAgentAsync(new AgentDefinition
        {
            Name = Name("approve"), Model = "m", Tools = ["record_effect"], ToolsRequiringApproval = ["record_effect"],
        });
        var session = await producer.NewSessionAsync();
        var run = await producer.RunFastAsync(session, agent.Id, "refund-1");
        await Eventually.TrueAsync(async () => (await producer.GetPendingApprovalsAsync(session)).Count == 1, "the approval request");
        var request = Assert.Single(await producer.GetPendingApprovalsAsync(session));

        await first.KillAsync();
        await producer.ApproveToolCallAsync(request.ToolExecutionId, comment: "ok");
        await using var second = await WorkerProcess.StartAsync(Arguments(claude, "second"));

        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the next instance to run the tool and finish", TimeSpan.FromSeconds(30));
        Assert.Equal("done: recorded refund-1", response.Text);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.tool_effects WHERE run_id = $1", run));
        var call = Assert.Single(await producer.GetRunToolCallsAsync(run));
        Assert.Equal(ToolExecutionState.Completed, call.State);
        Assert.Equal(second.InstanceId, await db.ScalarAsync<string>(
            "SELECT instance_id FROM {schema}.agentpg_iterations WHERE run_id = $1 AND iteration_number = 2", run));
    }

    [DatabaseFact]
    public async Task ApprovalTimeout_TheLeaderKilled_TheNextLeaderRejectsTheRequest_AndTheRunFinishes()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text((request.ToolResults[0].IsError ? "refused: " : "done: ") + request.ToolResults[0].Content)
            : FakeReply.Message(FakeContentBlock.ToolUse("record_effect", new { effect = "never" })) with { StopReason = "tool_use" });
        // The first instance (the only one, so the leader) has no timeout; the next one, started after the kill, has 2 s.
        var leader = await WorkerProcess.StartAsync(Arguments(claude, "leader"));
        await using var leaderWorker = leader;
        await using var producer = db.CreateClient();
        var agent = await producer.CreateAgentAsync(new AgentDefinition
        {
            Name = Name("timeout"), Model = "m", Tools = ["record_effect"], ToolsRequiringApproval = ["record_effect"],
        });
        var session = await producer.NewSessionAsync();
        var run = await producer.RunFastAsync(session, agent.Id, "wait for a person");
        await Eventually.TrueAsync(async () => (await producer.GetPendingApprovalsAsync(session)).Count == 1, "the approval request");
        await Eventually.TrueAsync(async () => await db.ScalarAsync<string>("SELECT leader_id FROM {schema}.agentpg_leader WHERE expires_at > now()") == leader.InstanceId,
            "the first instance to lead");

        await leader.KillAsync();
        var next = Arguments(claude, "next");
        next["approval-timeout-ms"] = "2000";
        await using var successor = await WorkerProcess.StartAsync(next);

        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the next leader to time the request out", TimeSpan.FromSeconds(30));
        Assert.Equal("refused: The tool call was rejected by the approver: approval timed out", response.Text);
        var call = Assert.Single(await producer.GetRunToolCallsAsync(run));
        Assert.False(call.Approval!.Approved);
        Assert.Equal("approval timed out", call.Approval.Comment);
        Assert.Empty(await producer.GetPendingApprovalsAsync(session));
    }

    [DatabaseFact]
    public async Task AutoCompaction_WorkerKilledDuringTheSummary_AnotherInstanceCompactsOnceAndFinishes_AndASecondCompactionIsCorrect()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        var summaryRequested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var summaries = SummarizingClaude(claude, async ct =>
        {
            // The first worker's summary never comes: it is killed while waiting for it.
            summaryRequested.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
            throw new OperationCanceledException(ct);
        });
        var first = await WorkerProcess.StartAsync(CompactingArguments(claude, "first"));
        await using var firstWorker = first;
        await using var producer = db.CreateClient(o => (o.ApiKey, o.BaseUrl) = (claude.ApiKey, claude.BaseUrl));
        var (session, run) = await RunNeedingACompactionAsync(producer, "compact");
        await Eventually.WithinAsync(summaryRequested.Task, "the first worker's summary request");

        await first.KillAsync();
        await using var second = await WorkerProcess.StartAsync(CompactingArguments(claude, "second"));

        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the second instance to compact and finish", TimeSpan.FromSeconds(30));
        Assert.Equal("noted: and now?", response.Text);
        var compaction = Assert.Single(await producer.GetCompactionEventsAsync(session));
        Assert.Equal("auto", compaction.Reason);
        // The document became the summary written by the second instance; nothing else was lost or repeated.
        var messages = await producer.GetMessagesAsync(session);
        Assert.Equal(["SUMMARY", "noted: a long docum", "and now?", "noted: and now?"],
            messages.Select(m => m.IsSummary ? "SUMMARY" : m.Content.Single().Text!));
        Assert.Equal("SUMMARY 2", messages[0].Content.Single().Text![^9..]);
        Assert.Equal(1, compaction.MessagesRemoved);
        Assert.Equal(1L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_message_archive WHERE session_id = $1 AND original_message::text LIKE '%a long document%'", session));

        // The app compacts again (everything before the last turn): one summary, of the earlier summary and the run.
        var again = await producer.CompactAsync(session, new CompactionOptions
        {
            Strategy = CompactionStrategy.Summarization, ProtectedTokens = 0, PreserveLastN = 1, UseTokenCountingApi = false,
        });
        Assert.True(again.SummaryCreated);
        messages = await producer.GetMessagesAsync(session);
        Assert.Equal(["SUMMARY", "noted: and now?"], messages.Select(m => m.IsSummary ? "SUMMARY" : m.Content.Single().Text!));
        Assert.Equal(2, (await producer.GetCompactionEventsAsync(session)).Count);
        Assert.Equal(3, summaries());
    }

    [DatabaseFact]
    public async Task Delegation_WorkerKilledDuringTheChildRun_ParentFinishesOnceWithTheChildsAnswer()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        var childRequested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var producer = db.CreateClient();
        var parent = await DelegatingAgentAsync(claude, producer, async ct =>
        {
            childRequested.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
            throw new OperationCanceledException(ct);
        });
        var first = await WorkerProcess.StartAsync(Arguments(claude, "first"));
        await using var firstWorker = first;
        var run = await producer.RunFastAsync(await producer.NewSessionAsync(), parent.Id, "delegate it");
        await Eventually.WithinAsync(childRequested.Task, "the child run's model call");

        await first.KillAsync();
        await using var second = await WorkerProcess.StartAsync(Arguments(claude, "second"));

        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the parent to finish after the rescue", TimeSpan.FromSeconds(30));
        Assert.Equal("parent got: child answer to look it up", response.Text);
        var call = Assert.Single(await producer.GetRunToolCallsAsync(run));
        Assert.Equal(ToolExecutionState.Completed, call.State);
        var childRun = Assert.Single(await db.ScalarAsync<Guid[]>("SELECT array_agg(id) FROM {schema}.agentpg_runs WHERE parent_run_id = $1", run));
        Assert.Equal(RunState.Completed, (await producer.GetRunAsync(childRun)).State);
        Assert.Equal(2L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_iterations WHERE run_id = $1 AND completed_at IS NOT NULL AND error_type IS NULL", run));
        Assert.Equal(4L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_messages WHERE run_id = $1", run));
    }

    [DatabaseFact]
    public async Task GracefulStop_WithAStreamAToolAndAnApprovalInFlight_HandsEachBack_AndTheNextInstanceFinishesWithoutARescue()
    {
        await CreateEffectsTableAsync();
        await using var claude = await FakeClaudeServer.StartAsync();
        var streams = 0;
        claude.Respond(async (request, ct) =>
        {
            if (request.ToolResults.Count > 0)
            {
                return FakeReply.Text("done: " + request.ToolResults[0].Content);
            }

            switch (request.LastUserText)
            {
                case "stream":
                    if (Interlocked.Increment(ref streams) == 1)
                    {
                        // The stopping instance's answer never comes.
                        await Task.Delay(Timeout.Infinite, ct);
                    }

                    return FakeReply.Text("streamed");
                case "echo":
                    return FakeReply.Message(FakeContentBlock.ToolUse("slow_echo", new { text = "echoed", ms = 3000 })) with { StopReason = "tool_use" };
                default:
                    return FakeReply.Message(FakeContentBlock.ToolUse("record_effect", new { effect = "approved" })) with { StopReason = "tool_use" };
            }
        });
        var stopping = Arguments(claude, "stopping");
        stopping["stop-timeout-ms"] = "500";
        await using var first = await WorkerProcess.StartAsync(stopping);
        await using var producer = db.CreateClient();
        var plain = await producer.CreateAgentAsync(new AgentDefinition { Name = Name("plain"), Model = "m", Tools = ["slow_echo"] });
        var guarded = await producer.CreateAgentAsync(new AgentDefinition
        {
            Name = Name("guarded"), Model = "m", Tools = ["record_effect"], ToolsRequiringApproval = ["record_effect"],
        });
        var stream = await producer.RunFastAsync(await producer.NewSessionAsync(), plain.Id, "stream");
        var echo = await producer.RunFastAsync(await producer.NewSessionAsync(), plain.Id, "echo");
        var approvalSession = await producer.NewSessionAsync();
        var approval = await producer.RunFastAsync(approvalSession, guarded.Id, "approve");
        await Eventually.TrueAsync(async () => streams == 1
                && await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = $1 AND state = 'running'", echo) == 1
                && (await producer.GetPendingApprovalsAsync(approvalSession)).Count == 1,
            "the stream, the tool and the approval request in flight");

        await first.StopAsync();

        Assert.Contains("STOPPED", first.Output, StringComparison.Ordinal);
        var handedBack = await producer.GetRunAsync(stream);
        Assert.Equal(RunState.Pending, handedBack.State);
        Assert.Null(handedBack.ClaimedByInstanceId);
        Assert.Equal("pending", await db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_tool_executions WHERE run_id = $1", echo));
        Assert.Single(await producer.GetPendingApprovalsAsync(approvalSession));

        // The rescue timeout is 60 s and the instance TTL 2 s: nothing below waits for either.
        await using var second = await WorkerProcess.StartAsync(Arguments(claude, "second"));
        var started = DateTime.UtcNow;
        await producer.ApproveToolCallAsync((await producer.GetPendingApprovalsAsync(approvalSession)).Single().ToolExecutionId);
        Assert.Equal("streamed", (await Eventually.WithinAsync(producer.WaitForRunAsync(stream), "the handed-back stream")).Text);
        Assert.Equal("done: echoed", (await Eventually.WithinAsync(producer.WaitForRunAsync(echo), "the handed-back tool")).Text);
        Assert.Equal("done: recorded approved", (await Eventually.WithinAsync(producer.WaitForRunAsync(approval), "the approved call")).Text);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(30), $"finished {DateTime.UtcNow - started} after the stop");
        Assert.Equal(0, (await producer.GetRunAsync(stream)).RescueAttempts);
        Assert.Equal(0, (await producer.GetRunAsync(echo)).RescueAttempts);
        Assert.Equal(0, await db.ScalarAsync<int>("SELECT rescue_attempts FROM {schema}.agentpg_tool_executions WHERE run_id = $1", echo));
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.tool_effects WHERE run_id = $1", approval));
    }

    [DatabaseFact]
    public async Task WatchRun_ListenConnectionsTerminatedMidStream_TheWatcherGetsEveryDeltaOnce_AndTheFinish()
    {
        var answer = string.Concat(Enumerable.Range(0, 60).Select(i => $"part {i:00}. "));
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(_ => FakeReply.Text(answer) with { EventDelay = TimeSpan.FromMilliseconds(60) });
        await using var worker = await WorkerProcess.StartAsync(Arguments(claude, "w"));
        var watcherId = "watcher-" + Guid.NewGuid().ToString("N")[..6];
        await using var watcher = db.CreateClient(o => (o.InstanceId, o.RunPollInterval) = (watcherId, TimeSpan.FromMilliseconds(200)));
        var agent = await watcher.CreateAgentAsync(new AgentDefinition { Name = Name("listen"), Model = "m", Tools = [] });
        var run = await watcher.RunFastAsync(await watcher.NewSessionAsync(), agent.Id, "stream slowly");

        var events = new List<RunEvent>();
        var terminated = 0L;
        await Eventually.WithinAsync(Task.Run(async () =>
        {
            await foreach (var e in watcher.WatchRunAsync(run))
            {
                events.Add(e);
                if (e is TextDeltaEvent && terminated == 0)
                {
                    // Both ends' LISTEN connections die mid-stream: the watcher's and the streaming worker's.
                    terminated = await db.ScalarAsync<long>(
                        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = ANY($1)) t",
                        (object)new[] { "agentpg-listen:" + watcherId, "agentpg-listen:" + worker.InstanceId });
                }
            }
        }), "the watch to end", TimeSpan.FromSeconds(60));

        Assert.Equal(2, terminated);
        Assert.All(events.Zip(events.Skip(1)), p => Assert.True(p.First.Sequence < p.Second.Sequence, "sequences strictly increase"));
        Assert.Equal(answer, string.Concat(events.OfType<TextDeltaEvent>().Select(d => d.Text)));
        var finished = Assert.IsType<RunFinishedEvent>(events[^1]);
        Assert.Equal(answer, finished.Response!.Text);
    }

    [DatabaseFact]
    public async Task ToolRetry_WorkerKilledAfterAFailedAttempt_TheRetryRunsOnceOnTheNextInstance_WithTheRightAttemptNumber()
    {
        await CreateEffectsTableAsync();
        await using var claude = await FakeClaudeServer.StartAsync();
        // The first attempt fails; the retry (after a backoff of about a second) holds for 2 s: the kill lands in the
        // backoff or in the retry, and either way the next instance makes attempt 2, once.
        claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text("done: " + request.ToolResults[0].Content)
            : FakeReply.Message(FakeContentBlock.ToolUse("record_effect", new { effect = "retried", fail_attempts = 1, hold_ms = 2000 })) with { StopReason = "tool_use" });
        var retrying = new Func<string, Dictionary<string, string>>(name =>
        {
            var arguments = Arguments(claude, name);
            arguments["tool-attempts"] = "3";
            arguments["tool-retry-jitter"] = "0.1";
            return arguments;
        });
        var first = await WorkerProcess.StartAsync(retrying("first"));
        await using var firstWorker = first;
        await using var producer = db.CreateClient();
        var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = Name("retry"), Model = "m", Tools = ["record_effect"] });
        var run = await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, "retry it");
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = $1 AND last_error LIKE '%attempt 1 of retried fails%'", run) == 1,
            "the first attempt to fail");

        await first.KillAsync();
        await using var second = await WorkerProcess.StartAsync(retrying("second"));

        Assert.Equal("done: recorded retried", (await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the retry on the next instance", TimeSpan.FromSeconds(30))).Text);
        Assert.Equal(2, await db.ScalarAsync<int>("SELECT attempt FROM {schema}.tool_effects WHERE run_id = $1", run));
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.tool_effects WHERE run_id = $1", run));
        Assert.Equal(2, await db.ScalarAsync<int>("SELECT attempt_count FROM {schema}.agentpg_tool_executions WHERE run_id = $1", run));
        Assert.Equal(second.InstanceId, await db.ScalarAsync<string>(
            "SELECT instance_id FROM {schema}.agentpg_iterations WHERE run_id = $1 AND iteration_number = 2", run));
    }

    [DatabaseFact]
    public async Task AutoCompaction_WorkerFrozenDuringTheSummary_TheSurvivorCompacts_AndTheThawedWorkersLateSummaryIsNotWritten()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        var frozenSummaryRequested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseFrozenSummary = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        SummarizingClaude(claude, async ct =>
        {
            frozenSummaryRequested.TrySetResult();
            await releaseFrozenSummary.Task.WaitAsync(ct);
            return FakeReply.Text("LATE SUMMARY");
        });
        await using var a = await WorkerProcess.StartAsync(CompactingArguments(claude, "a"));
        await using var producer = db.CreateClient();
        var (session, run) = await RunNeedingACompactionAsync(producer, "frozencompact");
        await Eventually.WithinAsync(frozenSummaryRequested.Task, "the first worker's summary request");

        a.Pause();
        await using var b = await WorkerProcess.StartAsync(CompactingArguments(claude, "b"));
        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the survivor to compact and finish", TimeSpan.FromSeconds(30));
        Assert.Equal("noted: and now?", response.Text);

        // Thaw the frozen worker with its summary: its compaction finds the session compacted meanwhile and writes nothing.
        releaseFrozenSummary.SetResult();
        await a.ThawAndStopAsync(db);

        var compaction = Assert.Single(await producer.GetCompactionEventsAsync(session));
        Assert.Equal("auto", compaction.Reason);
        var messages = await producer.GetMessagesAsync(session);
        Assert.Equal(["SUMMARY", "noted: a long docum", "and now?", "noted: and now?"],
            messages.Select(m => m.IsSummary ? (m.Content.Single().Text!.EndsWith("LATE SUMMARY", StringComparison.Ordinal) ? "LATE" : "SUMMARY") : m.Content.Single().Text!));
        Assert.Equal(RunState.Completed, (await producer.GetRunAsync(run)).State);
    }

    [DatabaseFact]
    public async Task Delegation_WorkerFrozenDuringTheChildRun_TheSurvivorFinishesBoth_AndTheThawedWorkersLateAnswerChangesNothing()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        var frozenChildRequested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseFrozenChild = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var producer = db.CreateClient();
        var parent = await DelegatingAgentAsync(claude, producer, async ct =>
        {
            frozenChildRequested.TrySetResult();
            await releaseFrozenChild.Task.WaitAsync(ct);
            return FakeReply.Text("late child answer");
        });
        await using var a = await WorkerProcess.StartAsync(Arguments(claude, "a"));
        var session = await producer.NewSessionAsync();
        var run = await producer.RunFastAsync(session, parent.Id, "delegate it");
        await Eventually.WithinAsync(frozenChildRequested.Task, "the child run's model call");

        a.Pause();
        await using var b = await WorkerProcess.StartAsync(Arguments(claude, "b"));
        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the survivor to finish the child and the parent", TimeSpan.FromSeconds(30));
        Assert.Equal("parent got: child answer to look it up", response.Text);

        releaseFrozenChild.SetResult();
        await a.ThawAndStopAsync(db);

        var finished = await producer.GetRunAsync(run);
        Assert.Equal(RunState.Completed, finished.State);
        Assert.Equal("parent got: child answer to look it up", finished.ResponseText);
        var call = Assert.Single(await producer.GetRunToolCallsAsync(run));
        Assert.Equal("child answer to look it up", call.Output);
        var childRun = await producer.GetRunAsync(call.ChildRunId!.Value);
        Assert.Equal("child answer to look it up", childRun.ResponseText);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE parent_run_id = $1", run));
        Assert.DoesNotContain(await producer.GetMessagesAsync(session), m => m.Content.Any(c => c.Text?.Contains("late", StringComparison.Ordinal) == true));
        Assert.Equal(0L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_messages WHERE run_id = $1 AND content::text LIKE '%late child answer%'", childRun.Id));
    }

    [DatabaseFact]
    public async Task AutoCompaction_GracefulStopDuringTheSummary_TheRunIsHandedBack_AndTheNextInstanceCompactsOnce()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        var summaryRequested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        SummarizingClaude(claude, async ct =>
        {
            // The stopping instance's summary never comes.
            summaryRequested.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
            throw new OperationCanceledException(ct);
        });
        var compacting = new Func<string, Dictionary<string, string>>(name =>
        {
            var arguments = CompactingArguments(claude, name);
            arguments["stop-timeout-ms"] = "500";
            return arguments;
        });
        await using var first = await WorkerProcess.StartAsync(compacting("first"));
        await using var producer = db.CreateClient();
        var (session, run) = await RunNeedingACompactionAsync(producer, "stopcompact");
        await Eventually.WithinAsync(summaryRequested.Task, "the first worker's summary request");

        await first.StopAsync();

        var handedBack = await producer.GetRunAsync(run);
        Assert.Equal(RunState.Pending, handedBack.State);
        Assert.Null(handedBack.ClaimedByInstanceId);
        Assert.Empty(await producer.GetCompactionEventsAsync(session));
        await using var second = await WorkerProcess.StartAsync(compacting("second"));
        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the next instance to compact and finish", TimeSpan.FromSeconds(30));
        Assert.Equal("noted: and now?", response.Text);
        Assert.Equal(0, (await producer.GetRunAsync(run)).RescueAttempts);
        Assert.Single(await producer.GetCompactionEventsAsync(session));
        Assert.Single(await producer.GetMessagesAsync(session), m => m.IsSummary);
    }

    [DatabaseFact]
    public async Task Delegation_GracefulStopDuringTheChildRun_TheChildIsHandedBack_AndTheNextInstanceFinishesBothWithoutARescue()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        var childRequested = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var producer = db.CreateClient();
        var parent = await DelegatingAgentAsync(claude, producer, async ct =>
        {
            childRequested.TrySetResult();
            await Task.Delay(Timeout.Infinite, ct);
            throw new OperationCanceledException(ct);
        });
        var stopping = Arguments(claude, "stopping");
        stopping["stop-timeout-ms"] = "500";
        await using var first = await WorkerProcess.StartAsync(stopping);
        var run = await producer.RunFastAsync(await producer.NewSessionAsync(), parent.Id, "delegate it");
        await Eventually.WithinAsync(childRequested.Task, "the child run's model call");

        await first.StopAsync();

        var childRun = await producer.GetRunAsync(Assert.Single(await db.ScalarAsync<Guid[]>(
            "SELECT array_agg(id) FROM {schema}.agentpg_runs WHERE parent_run_id = $1", run)));
        Assert.Equal(RunState.Pending, childRun.State);
        Assert.Null(childRun.ClaimedByInstanceId);
        Assert.Equal(RunState.PendingTools, (await producer.GetRunAsync(run)).State);
        await using var second = await WorkerProcess.StartAsync(Arguments(claude, "second"));

        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the next instance to finish the child and the parent", TimeSpan.FromSeconds(30));
        Assert.Equal("parent got: child answer to look it up", response.Text);
        Assert.Equal(0, (await producer.GetRunAsync(childRun.Id)).RescueAttempts);
        Assert.Equal(0, (await producer.GetRunAsync(run)).RescueAttempts);
        Assert.Equal(ToolExecutionState.Completed, Assert.Single(await producer.GetRunToolCallsAsync(run)).State);
    }

    [PrivateClusterFact]
    public async Task WaitForRun_PostgresDownForAWhileDuringTheWait_TheWaitGoesOnAndReturnsTheAnswer()
    {
        // Before, the wait's fallback poll threw the connection error ("Failed to connect") when it ran while PostgreSQL was
        // down, and the caller was told the wait failed while the run went on and completed: a caller that retries starts
        // the work a second time.
        await using var cluster = await PrivateCluster.StartAsync();
        await using var dataSource = cluster.CreateDataSource();
        await new AgentPgMigrator(dataSource).MigrateAsync();
        await using var claude = await FakeClaudeServer.StartAsync();
        var (requested, release) = HoldAnswer(claude, "the answer after the outage");
        await using var worker = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(cluster.ConnectionString, "public", claude, "w"));
        var logs = new LogCapture();
        await using var caller = AgentPgClient.Create(dataSource, new AgentPgOptions { RunPollInterval = TimeSpan.FromMilliseconds(100), LoggerFactory = logs });
        var agent = await caller.CreateAgentAsync(new AgentDefinition { Name = "waited", Model = "m", Tools = [] });
        var run = await caller.RunFastAsync(await caller.NewSessionAsync(), agent.Id, "answer after an outage");
        var waiting = caller.WaitForRunAsync(run);
        await Eventually.WithinAsync(requested.Task, "the worker's model call");

        await cluster.StopServerAsync();
        // The caller's LISTEN connection fails to reconnect five times (backoff 100 ms, doubling): well over a poll interval
        // (100 ms) with the server down.
        await Eventually.TrueAsync(() => logs.WithEventId(1102).Count >= 5, "the caller's LISTEN connection to fail five times", TimeSpan.FromSeconds(30));
        Assert.False(waiting.IsCompleted, waiting.Exception?.ToString());
        await cluster.StartServerAsync();
        release.SetResult();

        var response = await Eventually.WithinAsync(waiting, "the wait to return after the outage", TimeSpan.FromSeconds(60));
        Assert.Equal("the answer after the outage", response.Text);
    }

    [PrivateClusterFact]
    public async Task WatchRun_PostgresRestartedMidStream_TheWatcherResumesWithoutGapsOrDuplicates_AndSeesTheFinish()
    {
        await using var cluster = await PrivateCluster.StartAsync();
        await using var dataSource = cluster.CreateDataSource();
        await new AgentPgMigrator(dataSource).MigrateAsync();
        await using var claude = await FakeClaudeServer.StartAsync();
        var (streaming, release) = HoldAnswer(claude, "the answer after the restart");
        await using var worker = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(cluster.ConnectionString, "public", claude, "w"));
        await using var watcher = AgentPgClient.Create(dataSource, new AgentPgOptions { RunPollInterval = TimeSpan.FromMilliseconds(200) });
        var agent = await watcher.CreateAgentAsync(new AgentDefinition { Name = "watched", Model = "m", Tools = [] });
        var run = await watcher.RunFastAsync(await watcher.NewSessionAsync(), agent.Id, "answer after a restart");

        var events = new List<RunEvent>();
        var watching = Task.Run(async () =>
        {
            await foreach (var e in watcher.WatchRunAsync(run))
            {
                lock (events)
                {
                    events.Add(e);
                }
            }
        });
        await Eventually.WithinAsync(streaming.Task, "the worker's model call");
        await Eventually.TrueAsync(() => Task.FromResult(events.ToArray().OfType<IterationStartedEvent>().Any()), "the watcher to see the iteration start");

        // A wait started before the restart wakes as well.
        var waiting = watcher.WaitForRunAsync(run);
        await cluster.RestartAsync();
        release.SetResult();

        await Eventually.WithinAsync(watching, "the watch to end after the restart", TimeSpan.FromSeconds(60));
        Assert.Equal("the answer after the restart", (await Eventually.WithinAsync(waiting, "the wait to end after the restart")).Text);
        Assert.All(events.Zip(events.Skip(1)), p => Assert.True(p.First.Sequence < p.Second.Sequence, "sequences strictly increase"));
        var finished = Assert.IsType<RunFinishedEvent>(events[^1]);
        Assert.Equal(RunState.Completed, finished.State);
        Assert.Equal("the answer after the restart", finished.Response!.Text);

        // A second watch replays exactly what the first one saw.
        var replay = new List<RunEvent>();
        await foreach (var e in watcher.WatchRunAsync(run))
        {
            replay.Add(e);
        }

        Assert.Equal(replay.Select(e => e.Sequence), events.Select(e => e.Sequence));
    }

    [PrivateClusterFact]
    public async Task BatchRun_PostgresRestartedWhileTheBatchIsInFlight_TheResultIsRecordedOnce_WithoutASecondSubmission()
    {
        await using var cluster = await PrivateCluster.StartAsync();
        await using var dataSource = cluster.CreateDataSource();
        await new AgentPgMigrator(dataSource).MigrateAsync();
        // The batch processes until the test moves the fake's clock, after the restart.
        var clock = new SteppedClock();
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { BatchProcessingDelay = TimeSpan.FromHours(1), TimeProvider = clock });
        claude.Respond(_ => FakeReply.Text("batch answer"));
        await using var worker = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(cluster.ConnectionString, "public", claude, "w"));
        await using var producer = AgentPgClient.Create(dataSource, new AgentPgOptions { RunPollInterval = TimeSpan.FromMilliseconds(200) });
        var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = "batched", Model = "m", Tools = [] });
        var run = await producer.RunAsync(await producer.NewSessionAsync(), agent.Id, "batch it");
        await Eventually.TrueAsync(async () => (await producer.GetRunAsync(run)).State is RunState.BatchPending or RunState.BatchProcessing,
            "the batch to be submitted");

        await cluster.RestartAsync();
        clock.Step(TimeSpan.FromHours(1));

        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the batch's result after the restart", TimeSpan.FromSeconds(30));
        Assert.Equal("batch answer", response.Text);
        Assert.Single(claude.Requests, r => r.Method == "POST" && r.Path == "/v1/messages/batches");
        var iteration = Assert.Single(await producer.GetIterationsAsync(run));
        Assert.Equal(BatchStatus.Ended, iteration.BatchStatus);
        Assert.Equal(2, (await producer.GetMessagesAsync((await producer.GetRunAsync(run)).SessionId)).Count);
    }

    [PrivateClusterFact]
    public async Task PostgresCrashedMidLoad_UnloggedTablesEmptied_EveryRunAndTheApprovedCallCompleteWithEveryToolEffectOnce()
    {
        await using var cluster = await PrivateCluster.StartAsync();
        await using var dataSource = cluster.CreateDataSource();
        await new AgentPgMigrator(dataSource).MigrateAsync();
        await using (var create = dataSource.CreateCommand(
            "CREATE TABLE tool_effects (execution_id uuid, run_id uuid, effect text, attempt int, created_at timestamptz DEFAULT now())"))
        {
            await create.ExecuteNonQueryAsync();
        }

        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(request => (request.ToolResults.Count > 0
                ? FakeReply.Text("done: " + request.ToolResults[0].Content)
                : FakeReply.Message(FakeContentBlock.ToolUse("record_effect", new { effect = request.LastUserText, hold_ms = 300 })) with { StopReason = "tool_use" })
            with { EventDelay = TimeSpan.FromMilliseconds(20) });
        await using var w1 = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(cluster.ConnectionString, "public", claude, "c1"));
        await using var w2 = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(cluster.ConnectionString, "public", claude, "c2"));
        await using var producer = AgentPgClient.Create(dataSource, new AgentPgOptions { RunPollInterval = TimeSpan.FromMilliseconds(200) });
        var agent = await producer.CreateAgentAsync(new AgentDefinition { Name = "crashed", Model = "m", Tools = ["record_effect"] });
        var runs = new List<Guid>();
        for (var i = 0; i < 30; i++)
        {
            runs.Add(await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, "effect-" + i));
        }

        // And one call waiting for a person across the crash.
        var guarded = await producer.CreateAgentAsync(new AgentDefinition
        {
            Name = "crashed_guarded", Model = "m", Tools = ["record_effect"], ToolsRequiringApproval = ["record_effect"],
        });
        var approvalSession = await producer.NewSessionAsync();
        runs.Add(await producer.RunFastAsync(approvalSession, guarded.Id, "effect-approved"));

        var ids = runs.ToArray();
        await Eventually.TrueAsync(async () => await CountAsync(dataSource, "SELECT count(*) FROM agentpg_runs WHERE id = ANY($1) AND state = 'completed'", ids) >= 5
                && (await producer.GetPendingApprovalsAsync(approvalSession)).Count == 1,
            "five runs to complete and the approval request", TimeSpan.FromSeconds(60));

        await cluster.StopServerAsync("immediate");
        await cluster.StartServerAsync();
        // The app's first calls may meet pooled connections the crash broke (Npgsql throws on them once): it tries again. The
        // cluster commits without waiting for the WAL flush (synchronous_commit=off), so the answer that asked for approval, if
        // it committed just before the immediate stop, can be lost with its request: the run is then rescued and asks again.
        ToolApprovalRequest? request = null;
        await Eventually.TrueAsync(async () =>
        {
            try
            {
                request = (await producer.GetPendingApprovalsAsync(approvalSession)) is [var only] ? only : null;
                return request is not null;
            }
            catch (NpgsqlException)
            {
                return false;
            }
        }, "the approval request to be listed after the crash", TimeSpan.FromSeconds(90));
        await producer.ApproveToolCallAsync(request!.ToolExecutionId);

        await Eventually.TrueAsync(async () => await CountAsync(dataSource, "SELECT count(*) FROM agentpg_runs WHERE id = ANY($1) AND state IN ('completed', 'failed', 'cancelled')", ids) == 31,
            "every run to end after the crash", TimeSpan.FromSeconds(90));
        Assert.Equal(31L, await CountAsync(dataSource, "SELECT count(*) FROM agentpg_runs WHERE id = ANY($1) AND state = 'completed'", ids));
        Assert.Equal(31L, await CountAsync(dataSource, "SELECT count(*) FROM tool_effects WHERE run_id = ANY($1)", ids));
        Assert.Equal(31L, await CountAsync(dataSource, "SELECT count(DISTINCT run_id) FROM tool_effects WHERE run_id = ANY($1)", ids));
        Assert.Equal(124L, await CountAsync(dataSource, "SELECT count(*) FROM agentpg_messages WHERE run_id = ANY($1)", ids));
        Assert.Equal(2L, await CountAsync(dataSource, "SELECT count(*) FROM agentpg_instances WHERE id = ANY($1)", new[] { w1.InstanceId, w2.InstanceId }));
    }

    private static async Task<long> CountAsync(NpgsqlDataSource dataSource, string sql, object parameter)
    {
        try
        {
            await using var command = dataSource.CreateCommand(sql);
            command.Parameters.Add(new NpgsqlParameter { Value = parameter });
            return (long)(await command.ExecuteScalarAsync())!;
        }
        catch (NpgsqlException)
        {
            return -1; // the server is restarting
        }
    }
}
