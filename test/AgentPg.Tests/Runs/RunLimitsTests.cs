using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>Run limits: <see cref="AgentDefinition.MaxIterations"/> / <see cref="RunOptions.MaxIterations"/> bound a run's model
/// calls and <see cref="AgentDefinition.TokenBudget"/> / <see cref="RunOptions.TokenBudget"/> the tokens of a root run's whole
/// tree, checked before each call from what is stored (streamed and batched, across a rescue), failing the run with
/// <c>iteration_limit</c> or <c>token_budget_exceeded</c> and a conversation that stays valid.</summary>
public sealed class RunLimitsTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    // 100 + 50 + 30 + 20 = 200 tokens per model call, every counter of the budget's sum set.
    private static readonly FakeUsage s_usage = new() { InputTokens = 100, OutputTokens = 50, CacheCreationInputTokens = 30, CacheReadInputTokens = 20 };

    // The only statement of the budget's check (RunSql.RootTreeTokens).
    private const string BudgetStatement = "coalesce(root_run_id, id) AS id";

    private static TestTool Step() => new("step", (_, _, _) => Task.FromResult("stepped"));

    /// <summary>An agent that calls the step tool forever.</summary>
    private static FakeReply Loop(FakeRequest _) => FakeReply.ToolUse("step", new { }) with { Usage = s_usage };

    private static int ModelCalls(Harness h) => h.Claude.Requests.Count(r => r.IsMessagesCall);

    private static bool IsBatchCreate(RecordedRequest r) => r.Method == "POST" && r.Path == "/v1/messages/batches";

    private static Task<AgentPgException> FailureOfAsync(Harness h, Guid run)
        => Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run to end", s_timeout));

    [DatabaseFact]
    public async Task MaxIterations_ToolLoopingAgent_StopsAtTheLimit_AfterStoringTheLastToolResults()
    {
        await using var h = await Harness.StartAsync(db, tools: Step());
        var agent = await h.AgentAsync(a => a with { Tools = ["step"], MaxIterations = 3 });
        h.Claude.Respond(Loop);
        var session = await h.Client.NewSessionAsync();

        var run = await h.Client.RunFastAsync(session, agent.Id, "loop");
        var ex = await FailureOfAsync(h, run);

        Assert.Equal(AgentPgErrorCode.RunFailed, ex.Code);
        Assert.Equal("iteration_limit", ex.Context["error_type"]);
        Assert.Contains("had made 3 iterations", ex.Message, StringComparison.Ordinal);
        Assert.Contains($"AgentDefinition.MaxIterations = 3", ex.Message, StringComparison.Ordinal);
        Assert.Contains(agent.Name, ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, ModelCalls(h));
        // The fourth iteration was started (after the third round's results) and records why it made no call.
        var iterations = await h.Client.GetIterationsAsync(run);
        Assert.Equal([1, 2, 3, 4], iterations.Select(i => i.IterationNumber));
        Assert.Equal([null, null, null, "iteration_limit"], iterations.Select(i => i.ErrorType));
        Assert.Equal(Usage.Zero, iterations[3].Usage);
        // The conversation stays valid: every tool_use has its tool_result, the last message is the third round's results.
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.Equal(7, messages.Count);
        Assert.Equal(3, messages.Count(m => m.Content.Any(b => b.Type == ContentTypes.ToolResult)));
        Assert.Equal(MessageRole.User, messages[^1].Role);
        Assert.Equal(ContentTypes.ToolResult, Assert.Single(messages[^1].Content).Type);
        var failed = await h.Client.GetRunAsync(run);
        Assert.Equal((RunState.Failed, 3), (failed.State, failed.ToolIterations));
        Assert.Null(failed.MaxIterations);

        // The session goes on: the next run is answered.
        h.Claude.Respond(_ => FakeReply.Text("fine"));
        Assert.Equal("fine", (await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "stop looping"), "the next run", s_timeout)).Text);
    }

    [DatabaseFact]
    public async Task RunOptionsMaxIterations_TakesThePlaceOfTheAgents_LowerOrHigher_ForThatRunOnly()
    {
        await using var h = await Harness.StartAsync(db, tools: Step());
        var agent = await h.AgentAsync(a => a with { Tools = ["step"], MaxIterations = 2 });
        // Two tool rounds, then the answer: three model calls.
        h.Claude.Respond(r => CountResults(r) < 2 ? FakeReply.ToolUse("step", new { }) : FakeReply.Text("done after two rounds"));

        var lower = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "once", new RunOptions { MaxIterations = 1 });
        var lowerFailure = await FailureOfAsync(h, lower);
        var callsOfLower = ModelCalls(h);
        var higher = await Eventually.WithinAsync(
            h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "thrice", new RunOptions { MaxIterations = 3 }), "the run allowed three", s_timeout);
        var agents = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "the agent's limit");
        var agentsFailure = await FailureOfAsync(h, agents);

        Assert.Equal("iteration_limit", lowerFailure.Context["error_type"]);
        Assert.Contains("RunOptions.MaxIterations = 1", lowerFailure.Message, StringComparison.Ordinal);
        Assert.Equal(1, callsOfLower);
        Assert.Equal(1, (await h.Client.GetRunAsync(lower)).MaxIterations);
        Assert.Equal("done after two rounds", higher.Text);
        Assert.Equal(3, higher.IterationCount);
        Assert.Equal(3, (await h.Client.GetRunAsync(higher.RunId)).MaxIterations);
        Assert.Contains("AgentDefinition.MaxIterations = 2", agentsFailure.Message, StringComparison.Ordinal);

        static int CountResults(FakeRequest r) => r.Messages.EnumerateArray().Count(m => m.ToString().Contains("tool_result", StringComparison.Ordinal));
    }

    [DatabaseFact]
    public async Task NoLimits_ALongToolLoopCompletes_AndNoBudgetStatementRuns()
    {
        await using var h = await Harness.StartAsync(db, tools: Step());
        var agent = await h.AgentAsync(a => a with { Tools = ["step"] });
        h.Claude.Respond(r => r.ToolResults.Count > 0 && r.Messages.GetArrayLength() >= 25 ? FakeReply.Text("twelve rounds") : Loop(r));
        using var statements = new TracedStatements(db.Schema);

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go on"), "the long run", s_timeout);

        Assert.Equal("twelve rounds", response.Text);
        Assert.Equal(13, response.IterationCount);
        Assert.Equal(0, statements.Count(BudgetStatement));
        var run = await h.Client.GetRunAsync(response.RunId);
        Assert.Equal((null, null), (run.MaxIterations, run.TokenBudget));
    }

    [DatabaseFact]
    public async Task TokenBudget_DelegationTree_TheChildStopsAtTheRootsBudget_AndTheParentFailsWithoutAnotherCall()
    {
        await using var h = await Harness.StartAsync(db, tools: Step());
        var helper = await h.AgentAsync(a => a with { Name = "helper_" + Guid.NewGuid().ToString("N")[..6], Description = "Helps", SystemPrompt = "You are the helper.",
            Tools = ["step"], TokenBudget = 1_000_000 });
        var boss = await h.AgentAsync(a => a with { SystemPrompt = "You are the boss.", Tools = [], AgentIds = [helper.Id] });
        h.Claude.Respond(r => r.SystemText.StartsWith("You are the boss.", StringComparison.Ordinal)
            ? (r.ToolResults.Count == 0 ? FakeReply.ToolUse(helper.Name, new { task = "work" }) with { Usage = s_usage } : FakeReply.Text("boss done") with { Usage = s_usage })
            : Loop(r));
        using var statements = new TracedStatements(db.Schema);

        // Boss call (200), helper calls (400, 600): the helper's third call finds 600 ≥ 500 and is not made, nor the boss's next.
        var root = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), boss.Id, "delegate", new RunOptions { TokenBudget = 500 });
        var ex = await FailureOfAsync(h, root);

        Assert.Equal("token_budget_exceeded", ex.Context["error_type"]);
        Assert.Contains("used 600 tokens", ex.Message, StringComparison.Ordinal);
        Assert.Contains("token budget of 500 (RunOptions.TokenBudget)", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, ModelCalls(h));
        var rootRun = await h.Client.GetRunAsync(root);
        var call = Assert.Single(await h.Client.GetRunToolCallsAsync(root));
        var child = await h.Client.GetRunAsync(call.ChildRunId!.Value);
        Assert.Equal((RunState.Failed, "token_budget_exceeded"), (child.State, child.ErrorType));
        Assert.Contains("the budget of its root run", child.ErrorMessage, StringComparison.Ordinal);
        // The child carries its root's budget, not its own agent's.
        Assert.Equal(500, child.TokenBudget);
        Assert.True(call.IsError);
        Assert.Equal(child.ErrorMessage, call.ErrorMessage);
        // What was spent is what the runs' usage records, every counter of it.
        var spent = rootRun.Usage + child.Usage;
        Assert.Equal((300, 150, 90, 60), (spent.InputTokens, spent.OutputTokens, spent.CacheCreationInputTokens, spent.CacheReadInputTokens));
        // Checked before each of the five iterations started: three calls made, two refused.
        Assert.Equal(5, statements.Count(BudgetStatement));
    }

    [DatabaseFact]
    public async Task TokenBudget_OfTheRootAgent_BatchMode_StopsBeforeTheNextBatch()
    {
        await using var h = await Harness.StartAsync(db, tools: Step());
        var agent = await h.AgentAsync(a => a with { Tools = ["step"], TokenBudget = 300 });
        h.Claude.Respond(Loop);

        var run = await h.Client.RunAsync(await h.Client.NewSessionAsync(), agent.Id, "loop in batches");
        var ex = await FailureOfAsync(h, run);

        Assert.Equal("token_budget_exceeded", ex.Context["error_type"]);
        Assert.Contains($"token budget of 300 (AgentDefinition.TokenBudget of agent '{agent.Name}')", ex.Message, StringComparison.Ordinal);
        Assert.Contains("used 400 tokens", ex.Message, StringComparison.Ordinal);
        Assert.Equal(2, h.Claude.Requests.Count(IsBatchCreate));
        var iterations = await h.Client.GetIterationsAsync(run);
        Assert.Equal([null, null, "token_budget_exceeded"], iterations.Select(i => i.ErrorType));
        Assert.Null(iterations[2].BatchId);
        var failed = await h.Client.GetRunAsync(run);
        Assert.Equal((RunMode.Batch, RunState.Failed), (failed.RunMode, failed.State));
        Assert.Null(failed.TokenBudget);
    }

    [DatabaseFact]
    public async Task MaxIterations_RescuedRun_CountsTheIterationsMadeBeforeTheCrashFromTheDatabase()
    {
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.LeaderTtl = TimeSpan.FromMilliseconds(600);
            o.InstanceTtl = TimeSpan.FromSeconds(2);
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(200);
            o.CleanupInterval = TimeSpan.FromMilliseconds(300);
            o.RunRescue.Interval = TimeSpan.FromMilliseconds(200);
        }, tools: Step());
        var agent = await h.AgentAsync(a => a with { Tools = ["step"], MaxIterations = 2 });
        var secondCall = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(async (r, ct) =>
        {
            if (r.ToolResults.Count == 0)
            {
                return FakeReply.ToolUse("step", new { });
            }

            // The second call hangs, as the stream of a worker that dies would.
            secondCall.TrySetResult();
            await release.Task.WaitAsync(ct);
            return FakeReply.Text("too late");
        });

        try
        {
            var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "crash in the middle");
            await Eventually.WithinAsync(secondCall.Task, "the run's second model call", s_timeout);
            // Its holder dies: the run now looks claimed by an instance that stopped heartbeating an hour ago.
            await db.Seed.DeadInstanceAsync("ghost-limits");
            await db.Seed.ClaimRunAsync(run, "ghost-limits", TimeSpan.FromHours(1));

            // Rescued, claimed again: the repeat of the abandoned second iteration would be the third model call.
            var ex = await FailureOfAsync(h, run);

            Assert.Equal("iteration_limit", ex.Context["error_type"]);
            Assert.Contains("before model call 3", ex.Message, StringComparison.Ordinal);
            Assert.Equal(2, ModelCalls(h));
            var failed = await h.Client.GetRunAsync(run);
            Assert.Equal(1, failed.RescueAttempts);
            Assert.Equal([null, "abandoned", "iteration_limit"], (await h.Client.GetIterationsAsync(run)).Select(i => i.ErrorType));
        }
        finally
        {
            release.TrySetResult();
        }
    }

    [DatabaseFact]
    public async Task InvalidLimits_AreRefusedWithAClearError_AndNothingIsStored()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync(a => a with { MaxIterations = 25, TokenBudget = 2_000_000 });
        var session = await h.Client.NewSessionAsync();

        var zero = await Assert.ThrowsAsync<ArgumentException>(() => h.AgentAsync(a => a with { MaxIterations = 0 }));
        var tooMany = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.UpdateAgentAsync(agent with { MaxIterations = 10_001 }));
        var noBudget = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.UpdateAgentAsync(agent with { TokenBudget = 0 }));
        var runZero = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.RunFastAsync(session, agent.Id, "x", new RunOptions { MaxIterations = 0 }));
        var runNegative = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.RunAsync(session, agent.Id, "x", new RunOptions { TokenBudget = -1 }));

        Assert.Equal("AgentDefinition.MaxIterations must be between 1 and 10000 model calls (was 0); leave it null for no limit. (Parameter 'definition')", zero.Message);
        Assert.StartsWith("AgentDefinition.MaxIterations must be between 1 and 10000 model calls (was 10001)", tooMany.Message, StringComparison.Ordinal);
        Assert.StartsWith("AgentDefinition.TokenBudget must be a positive number of tokens (was 0); leave it null for no budget.", noBudget.Message, StringComparison.Ordinal);
        Assert.StartsWith("RunOptions.MaxIterations must be between 1 and 10000", runZero.Message, StringComparison.Ordinal);
        Assert.StartsWith("RunOptions.TokenBudget must be a positive number of tokens (was -1)", runNegative.Message, StringComparison.Ordinal);
        var stored = await h.Client.GetAgentByIdAsync(agent.Id);
        Assert.Equal((25, 2_000_000L), (stored.MaxIterations, stored.TokenBudget));
        Assert.Empty((await h.Client.ListRunsAsync(new RunQuery { SessionId = session })).Items);

        // Valid ones are stored with the agent and the run, and an idempotent repeat must ask for the same limits.
        await h.Client.UpdateAgentAsync(stored with { MaxIterations = null, TokenBudget = 7 });
        Assert.Equal((null, 7L), ((await h.Client.GetAgentByIdAsync(agent.Id)).MaxIterations, (await h.Client.GetAgentByIdAsync(agent.Id)).TokenBudget));
        var limited = new RunOptions { MaxIterations = 10_000, TokenBudget = long.MaxValue, IdempotencyKey = "limits" };
        var run = await h.Client.RunFastAsync(session, agent.Id, "x", limited);
        await h.Client.CancelRunAsync(run);
        Assert.Equal((10_000, long.MaxValue), ((await h.Client.GetRunAsync(run)).MaxIterations, (await h.Client.GetRunAsync(run)).TokenBudget));
        var conflict = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RunFastAsync(session, agent.Id, "x",
            new RunOptions { MaxIterations = 9, TokenBudget = long.MaxValue, IdempotencyKey = "limits" }));
        Assert.Equal(AgentPgErrorCode.IdempotencyConflict, conflict.Code);
    }
}
