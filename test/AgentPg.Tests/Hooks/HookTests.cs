using System.Collections.Concurrent;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Hooks;

/// <summary>AgentPgHooks: the model-call hooks, the tool hook and the error hook (leadership hooks: LeadershipTests).</summary>
public sealed class HookTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static FakeReply OneToolRound(FakeRequest request) => request.ToolResults.Count > 0
        ? FakeReply.Text("the answer: " + request.ToolResults[0].Content)
        : FakeReply.Message(FakeContentBlock.Text("Looking it up."), FakeContentBlock.ToolUse("lookup", new { q = "x" }, "toolu_hook")) with { StopReason = "tool_use" };

    [DatabaseTheory]
    [InlineData(RunMode.Streaming)]
    [InlineData(RunMode.Batch)]
    public async Task ModelHooks_SeeEveryRequestBeforeItIsSentAndEveryAnswer(RunMode mode)
    {
        var before = new ConcurrentQueue<(ModelCallContext Context, int RequestsAtServer)>();
        var after = new ConcurrentQueue<ModelCallContext>();
        FakeClaudeServer? claude = null;
        await using var h = await Harness.StartAsync(db, o => o.Hooks = new AgentPgHooks
        {
            OnBeforeMessage = (context, _) =>
            {
                before.Enqueue((context, claude!.Requests.Count(r => r.IsMessagesCall || r.Path == "/v1/messages/batches")));
                return Task.CompletedTask;
            },
            OnAfterMessage = (context, _) =>
            {
                after.Enqueue(context);
                return Task.CompletedTask;
            },
        }, start: true, new TestTool("lookup", (_, _, _) => Task.FromResult("found")));
        claude = h.Claude;
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"] });
        h.Claude.Respond(OneToolRound);
        var session = await h.Client.NewSessionAsync();

        var response = await Eventually.WithinAsync(mode == RunMode.Batch
            ? h.Client.RunSyncAsync(session, agent.Id, "look it up")
            : h.Client.RunFastSyncAsync(session, agent.Id, "look it up"), "the run", TimeSpan.FromSeconds(60));

        Assert.Equal("the answer: found", response.Text);
        Assert.Equal([1, 2], before.Select(b => b.Context.IterationNumber));
        Assert.Equal([0, 1], before.Select(b => b.RequestsAtServer));
        Assert.All(before, b =>
        {
            Assert.Equal(response.RunId, b.Context.RunId);
            Assert.Equal(session, b.Context.SessionId);
            Assert.Equal(agent.Id, b.Context.AgentId);
            Assert.Equal(mode, b.Context.RunMode);
            Assert.Equal(agent.Model, b.Context.Request.GetProperty("model").GetString());
            Assert.Null(b.Context.Response);
            Assert.Null(b.Context.Usage);
        });
        // The second request carries the tool round: user, assistant tool_use, user tool_result.
        Assert.Equal(1, before.First().Context.Request.GetProperty("messages").GetArrayLength());
        Assert.Equal(3, before.Last().Context.Request.GetProperty("messages").GetArrayLength());

        Assert.Equal([1, 2], after.Select(a => a.IterationNumber));
        Assert.All(after, a =>
        {
            Assert.Equal(response.RunId, a.RunId);
            Assert.Equal(mode, a.RunMode);
            Assert.NotNull(a.Usage);
            Assert.True(a.Usage!.OutputTokens > 0);
        });
        Assert.Equal(["tool_use", "end_turn"], after.Select(a => a.Response!.Value.GetProperty("stop_reason").GetString()));
        var lastContent = after.Last().Response!.Value.GetProperty("content");
        Assert.Equal("the answer: found", lastContent[0].GetProperty("text").GetString());
        Assert.Equal("toolu_hook", after.First().Response!.Value.GetProperty("content")[1].GetProperty("id").GetString());
    }

    [DatabaseFact]
    public async Task OnToolCall_ReportsEachFinishedExecutionOnTheExecutingInstance_SuccessAndFinalFailure()
    {
        var events = new ConcurrentQueue<ToolCallEvent>();
        var producerEvents = 0;
        var attempts = 0;
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.ToolRetry.MaxAttempts = 2;
            o.Hooks = new AgentPgHooks
            {
                OnToolCall = (e, _) =>
                {
                    events.Enqueue(e);
                    return Task.CompletedTask;
                },
            };
        }, start: true,
            new TestTool("good", (_, _, _) => Task.FromResult("fine")),
            new TestTool("bad", (_, _, _) =>
            {
                Interlocked.Increment(ref attempts);
                throw new InvalidOperationException("broken on purpose");
            }));
        var producer = await h.AddClientAsync(o => o.Hooks = new AgentPgHooks
        {
            OnToolCall = (_, _) =>
            {
                Interlocked.Increment(ref producerEvents);
                return Task.CompletedTask;
            },
        }, start: false);
        var agent = await h.AgentAsync(a => a with { Tools = ["good", "bad"] });
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text("done")
            : FakeReply.Message(FakeContentBlock.ToolUse("good", new { n = 1 }, "toolu_good"), FakeContentBlock.ToolUse("bad", new { n = 2 }, "toolu_bad")) with { StopReason = "tool_use" });
        var session = await producer.NewSessionAsync();

        var response = await Eventually.WithinAsync(producer.RunFastSyncAsync(session, agent.Id, "use both"), "the run");

        Assert.Equal("done", response.Text);
        await Eventually.TrueAsync(() => events.Count == 2, "two tool hook calls");
        Assert.Equal(2, attempts);
        var good = Assert.Single(events, e => e.ToolName == "good");
        Assert.Equal("fine", good.Output);
        Assert.False(good.IsError);
        Assert.Null(good.ErrorMessage);
        Assert.Equal(1, good.ToolInput.GetProperty("n").GetInt32());
        var bad = Assert.Single(events, e => e.ToolName == "bad");
        Assert.True(bad.IsError);
        Assert.Contains("broken on purpose", bad.ErrorMessage, StringComparison.Ordinal);
        Assert.All(events, e =>
        {
            Assert.Equal(response.RunId, e.RunId);
            Assert.Equal(session, e.SessionId);
            Assert.Equal(1, e.IterationNumber);
            Assert.False(e.IsAgentTool);
            Assert.True(e.Duration >= TimeSpan.Zero);
        });
        Assert.Equal(0, Volatile.Read(ref producerEvents));
    }

    [DatabaseFact]
    public async Task OnToolCall_FiresForEveryKindOfTerminalExecution()
    {
        // Agent tool, unknown tool, invalid input, discard, cancel, timeout and success: each ends exactly once, and each
        // is reported to OnToolCall.
        var events = new ConcurrentQueue<ToolCallEvent>();
        var strict = new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["n"] = new() { Type = "integer" } }, Required = ["n"] };
        // Only "slow" times out: the test fires the timeouts once every other call has ended and "slow" runs (a real timeout
        // also had to cover the other tools' Task.Run dispatch, which a busy thread pool on two cores can delay).
        var timeouts = new HeldTimeouts(TimeSpan.FromMinutes(17));
        var slowStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.ToolRetry.MaxAttempts = 1;
            o.ToolTimeout = timeouts.Timeout;
            o.TimeProvider = timeouts;
            o.Hooks = new AgentPgHooks
            {
                OnToolCall = (e, _) =>
                {
                    events.Enqueue(e);
                    return Task.CompletedTask;
                },
            };
        }, start: true,
            new TestTool("ok", (_, _, _) => Task.FromResult("fine")),
            new TestTool("strict", (_, _, _) => Task.FromResult("never"), strict),
            new TestTool("discard", (_, _, _) => throw new ToolDiscardException("not worth retrying")),
            new TestTool("cancel", (_, _, _) => throw new ToolCancelException("cancelled by the tool")),
            new TestTool("slow", async (_, _, ct) =>
            {
                slowStarted.TrySetResult();
                await new TaskCompletionSource().Task.WaitAsync(ct);
                return "never";
            }));
        var helperName = "helper_" + Guid.NewGuid().ToString("N")[..8];
        var helper = await h.Client.CreateAgentAsync(new AgentDefinition { Name = helperName, Model = "claude-sonnet-4-5", SystemPrompt = "You help.", Description = "Helps" });
        var agent = await h.AgentAsync(a => a with { Tools = ["ok", "strict", "discard", "cancel", "slow"], AgentIds = [helper.Id] });
        h.Claude.Respond(request =>
        {
            if (request.SystemText.StartsWith("You help.", StringComparison.Ordinal))
            {
                return FakeReply.Text("helped");
            }

            return request.ToolResults.Count > 0
                ? FakeReply.Text("all done")
                : FakeReply.Message(
                    FakeContentBlock.ToolUse("ok", new { }),
                    FakeContentBlock.ToolUse("strict", new { n = "not a number" }),
                    FakeContentBlock.ToolUse("discard", new { }),
                    FakeContentBlock.ToolUse("cancel", new { }),
                    FakeContentBlock.ToolUse("slow", new { }),
                    FakeContentBlock.ToolUse("ghost", new { }),
                    FakeContentBlock.ToolUse(helperName, new { task = "help" })) with { StopReason = "tool_use" };
        });

        var run = h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "everything");
        await Eventually.WithinAsync(slowStarted.Task, "the slow tool to start");
        await Eventually.TrueAsync(() => events.Count == 6, "the six other tool calls to end");
        timeouts.FireAll();
        var response = await Eventually.WithinAsync(run, "the run");

        Assert.Equal("all done", response.Text);
        await Eventually.TrueAsync(() => events.Count >= 7, "seven tool hook calls");
        var byName = events.ToDictionary(e => e.ToolName);
        Assert.Equal(7, events.Count);
        Assert.False(byName["ok"].IsError);
        Assert.True(byName["strict"].IsError);
        Assert.True(byName["discard"].IsError);
        Assert.True(byName["cancel"].IsError);
        Assert.Contains("timed out", byName["slow"].ErrorMessage, StringComparison.Ordinal);
        Assert.Contains("tool not found", byName["ghost"].ErrorMessage, StringComparison.Ordinal);
        var delegated = byName[helperName];
        Assert.True(delegated.IsAgentTool);
        Assert.False(delegated.IsError);
        Assert.Equal("helped", delegated.Output);
        Assert.All(events, e => Assert.Equal(response.RunId, e.RunId));
    }

    [DatabaseFact]
    public async Task OnToolCall_ReportsADelegationRefusedForACycle()
    {
        // alpha delegates to beta, which delegates back to alpha: the second delegation is refused without a child run, so no
        // child's completion reports it; before, OnToolCall never heard of it (OnToolComplete did).
        var events = new ConcurrentQueue<ToolCallEvent>();
        await using var h = await Harness.StartAsync(db, o => o.Hooks = new AgentPgHooks
        {
            OnToolCall = (e, _) =>
            {
                events.Enqueue(e);
                return Task.CompletedTask;
            },
        });
        string alpha = "alpha_" + Guid.NewGuid().ToString("N")[..8], beta = "beta_" + Guid.NewGuid().ToString("N")[..8];
        var alphaAgent = await h.Client.CreateAgentAsync(new AgentDefinition { Name = alpha, Model = "claude-sonnet-4-5", SystemPrompt = "You are alpha.", Description = "Alpha" });
        var betaAgent = await h.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = beta, Model = "claude-sonnet-4-5", SystemPrompt = "You are beta.", Description = "Beta", AgentIds = [alphaAgent.Id],
        });
        await h.Client.UpdateAgentAsync(alphaAgent with { AgentIds = [betaAgent.Id] });
        h.Claude.Respond(r => r.ToolResults.Count > 0
            ? FakeReply.Text("got: " + r.ToolResults[0].Content)
            : FakeReply.ToolUse(r.SystemText.StartsWith("You are alpha.", StringComparison.Ordinal) ? beta : alpha, new { task = "help" }));

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), alphaAgent.Id, "start"), "the run");

        Assert.StartsWith("got: got: Delegation refused:", response.Text, StringComparison.Ordinal);
        await Eventually.TrueAsync(() => events.Count >= 2, "both delegations reported");
        var refused = Assert.Single(events, e => e.ToolName == alpha);
        Assert.True(refused.IsAgentTool);
        Assert.True(refused.IsError);
        Assert.StartsWith("Delegation refused:", refused.ErrorMessage, StringComparison.Ordinal);
        var delegated = Assert.Single(events, e => e.ToolName == beta);
        Assert.False(delegated.IsError);
        Assert.Equal(response.RunId, delegated.RunId);
    }

    [DatabaseFact]
    public async Task HooksThatThrow_NeverBreakARun()
    {
        var calls = 0;
        Task Throw()
        {
            Interlocked.Increment(ref calls);
            throw new InvalidOperationException("hook failure");
        }

        await using var h = await Harness.StartAsync(db, o => o.Hooks = new AgentPgHooks
        {
            OnBeforeMessage = (_, _) => Throw(),
            OnAfterMessage = (_, _) => Task.FromException(new InvalidOperationException("faulted hook task")),
            OnToolCall = (_, _) => Throw(),
        }, start: true, new TestTool("lookup", (_, _, _) => Task.FromResult("found")));
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"] });
        h.Claude.Respond(OneToolRound);

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "look it up"), "the run");

        Assert.Equal("the answer: found", response.Text);
        Assert.Equal(RunState.Completed, (await h.Client.GetRunAsync(response.RunId)).State);
        await Eventually.TrueAsync(() => Volatile.Read(ref calls) == 3, "two model hooks and one tool hook to be called");
    }

    [DatabaseFact]
    public async Task OnError_ReceivesBackgroundErrors_AndTheInstanceRecoversWhenTheyStop()
    {
        var errors = new ConcurrentQueue<Exception>();
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(100);
            o.InstanceTtl = TimeSpan.FromMinutes(1);
            o.Hooks = new AgentPgHooks
            {
                OnError = (ex, _) =>
                {
                    errors.Enqueue(ex);
                    return Task.CompletedTask;
                },
            };
        });
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("still working"));

        // Every heartbeat now fails in the database (a real error from PostgreSQL, not a mock).
        await db.ExecuteAsync("ALTER TABLE {schema}.agentpg_instances ADD CONSTRAINT hook_test_no_heartbeat CHECK (last_heartbeat_at < '2000-01-01') NOT VALID");
        try
        {
            await Eventually.TrueAsync(() => !errors.IsEmpty, "the failing heartbeat to reach OnError");
        }
        finally
        {
            await db.ExecuteAsync("ALTER TABLE {schema}.agentpg_instances DROP CONSTRAINT hook_test_no_heartbeat");
        }

        var error = Assert.IsType<PostgresException>(errors.First(), exactMatch: false);
        Assert.Equal(PostgresErrorCodes.CheckViolation, error.SqlState);
        var before = await db.ScalarAsync<DateTime>("SELECT last_heartbeat_at FROM {schema}.agentpg_instances WHERE id = $1", h.Client.InstanceId);
        await Eventually.TrueAsync(async () => await db.ScalarAsync<DateTime>(
            "SELECT last_heartbeat_at FROM {schema}.agentpg_instances WHERE id = $1", h.Client.InstanceId) > before, "heartbeats to resume");
        Assert.Equal("still working", (await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"), "a run after the errors")).Text);
    }
}
