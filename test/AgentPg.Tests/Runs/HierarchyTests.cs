using System.Collections.Concurrent;
using AgentPg.Notifications;
using AgentPg.Runs.Events;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.Logging.Abstractions;

namespace AgentPg.Tests.Runs;

public sealed class HierarchyTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static string Unique(string name) => name + "_" + Guid.NewGuid().ToString("N")[..6];

    /// <summary>Answers as the agent named in the system prompt ("You are NAME."): its script decides.</summary>
    private static void Script(FakeClaudeServer claude, Dictionary<string, Func<FakeRequest, FakeReply>> byAgent)
        => claude.Respond(request =>
        {
            var name = request.SystemText.Replace("You are ", "", StringComparison.Ordinal).TrimEnd('.');
            return byAgent.TryGetValue(name, out var script) ? script(request) : null;
        });

    private static Task<AgentDefinition> Agent(Harness h, string name, IReadOnlyList<Guid>? delegates = null, IReadOnlyList<string>? tools = null)
        => h.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = name,
            Description = $"The {name} agent",
            Model = "claude-sonnet-4-5",
            SystemPrompt = $"You are {name}.",
            AgentIds = delegates ?? [],
            Tools = tools ?? [],
        });

    /// <summary>A boss agent that delegates to a helper agent (its tool input <paramref name="task"/>) and then answers
    /// "boss: " followed by the helper's answer (<paramref name="bossAnswer"/> instead, when given); returns the boss's id
    /// and the helper's name.</summary>
    private static async Task<(Guid Boss, string Helper)> BossAndHelperAsync(
        Harness h, object task, Func<FakeRequest, FakeReply>? helperReply, Func<string, string>? bossAnswer = null)
    {
        string boss = Unique("boss"), helper = Unique("helper");
        var helperAgent = await Agent(h, helper);
        var bossAgent = await Agent(h, boss, [helperAgent.Id]);
        var scripts = new Dictionary<string, Func<FakeRequest, FakeReply>>
        {
            [boss] = r => r.ToolResults.Count == 0
                ? FakeReply.ToolUse(helper, task)
                : FakeReply.Text(bossAnswer is null ? "boss: " + r.ToolResults[0].Content : bossAnswer(r.ToolResults[0].Content)),
        };
        if (helperReply is not null)
        {
            scripts[helper] = helperReply;
        }

        Script(h.Claude, scripts);
        return (bossAgent.Id, helper);
    }

    [DatabaseFact]
    public async Task ThreeLevels_CompleteWithOwnMessagesPerRunAndVariablesReachTheDeepestTool()
    {
        await using var h = await Harness.StartAsync(db, tools: new TestTool("read_tenant", (ctx, _, _) => Task.FromResult("tenant=" + ctx.GetVariable<string>("tenant"))));
        string pm = Unique("pm"), research = Unique("research"), lead = Unique("lead"), worker = Unique("worker");
        var workerAgent = await Agent(h, worker, tools: ["read_tenant"]);
        var leadAgent = await Agent(h, lead, [workerAgent.Id]);
        var researchAgent = await Agent(h, research);
        var pmAgent = await Agent(h, pm, [researchAgent.Id, leadAgent.Id]);
        var usage = new FakeUsage { InputTokens = 10, OutputTokens = 5 };
        Script(h.Claude, new()
        {
            [pm] = r => r.ToolResults.Count == 0
                ? FakeReply.Message(FakeContentBlock.ToolUse(research, new { task = "find facts" }), FakeContentBlock.ToolUse(lead, new { task = "build it" })) with { StopReason = "tool_use", Usage = usage }
                : FakeReply.Text("PM: " + string.Join(" / ", r.ToolResults.Select(t => t.Content))) with { Usage = usage },
            [research] = r => FakeReply.Text("facts for '" + r.LastUserText + "'") with { Usage = usage },
            [lead] = r => r.ToolResults.Count == 0
                ? FakeReply.ToolUse(worker, new { task = "dig" }) with { Usage = usage }
                : FakeReply.Text("lead got " + r.ToolResults[0].Content) with { Usage = usage },
            [worker] = r => r.ToolResults.Count == 0
                ? FakeReply.ToolUse("read_tenant", new { }) with { Usage = usage }
                : FakeReply.Text("worker saw " + r.ToolResults[0].Content) with { Usage = usage },
        });
        var starts = new ConcurrentBag<ToolCallEvent>();
        var completes = new ConcurrentBag<ToolCallEvent>();
        var session = await h.Client.NewSessionAsync();

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, pmAgent.Id, "plan the project", new RunOptions
        {
            Variables = new Dictionary<string, object?> { ["tenant"] = "acme" },
            OverrideInstructions = "You are " + pm + ".",
            OnToolStart = starts.Add,
            OnToolComplete = completes.Add,
        }), "the hierarchy to complete", TimeSpan.FromSeconds(60));

        Assert.Equal($"PM: facts for 'find facts' / lead got worker saw tenant=acme", response.Text);
        Assert.Equal(2, response.ToolCalls.Count);
        Assert.All(response.ToolCalls, c => Assert.True(c.IsAgentTool));
        Assert.All(response.ToolCalls, c => Assert.NotNull(c.ChildRunId));
        Assert.Equal([researchAgent.Id, leadAgent.Id], response.ToolCalls.Select(c => c.AgentId!.Value));

        // Usage: the PM's own two calls; the tree adds research (1), lead (2) and worker (2).
        Assert.Equal(new Usage { InputTokens = 20, OutputTokens = 10 }, response.Usage);
        Assert.Equal(new Usage { InputTokens = 70, OutputTokens = 35 }, response.TotalUsage);

        // Each run's messages are its own: the lead's conversation starts with its task, not the PM's prompt.
        var leadRun = await h.Client.GetRunAsync(response.ToolCalls[1].ChildRunId!.Value);
        Assert.Equal(1, leadRun.Depth);
        Assert.Equal(response.RunId, leadRun.ParentRunId);
        Assert.Equal("acme", leadRun.Variables["tenant"]);
        Assert.Null(leadRun.OverrideInstructions);
        var messages = await h.Client.GetMessagesAsync(session);
        var leadMessages = messages.Where(m => m.RunId == leadRun.Id).ToList();
        Assert.Equal("build it", leadMessages[0].Content[0].Text);
        Assert.Equal(4, leadMessages.Count);
        var pmMessages = messages.Where(m => m.RunId == response.RunId).ToList();
        Assert.Equal(4, pmMessages.Count);
        var pmSecondRequest = h.Claude.Requests.Where(r => r.IsMessagesCall && RequestBodies.SystemText(r.Body!.Value) == $"You are {pm}.").Last();
        Assert.Equal(3, pmSecondRequest.Body!.Value.GetProperty("messages").GetArrayLength());

        // Callbacks reach child runs and fire for agent tools too.
        try
        {
            await Eventually.TrueAsync(() => completes.Count >= 4, "four OnToolComplete callbacks");
        }
        catch (Xunit.Sdk.XunitException ex)
        {
            // Which one was dropped tells where: an agent tool's (read back on its child's notification) or a tool's.
            Assert.Fail($"{ex.Message} Arrived: {string.Join(", ", completes.Select(c => $"{c.ToolName} on run {c.RunId}"))}.");
        }

        Assert.Contains(starts, e => e.ToolName == research && e.IsAgentTool && e.RunId == response.RunId);
        Assert.Contains(starts, e => e.ToolName == "read_tenant" && !e.IsAgentTool);
        Assert.Contains(completes, e => e.ToolName == lead && e.IsAgentTool && e.Output == "lead got worker saw tenant=acme");
        Assert.Contains(completes, e => e.ToolName == worker && e.IsAgentTool);
        Assert.Contains(completes, e => e.ToolName == "read_tenant" && e.Output == "tenant=acme");
    }

    [DatabaseFact]
    public async Task AgentToolComplete_FiresWhenTheParentFinishesBeforeTheChildsToolCallIsReadBack()
    {
        await using var h = await Harness.StartAsync(db);
        var (boss, helper) = await BossAndHelperAsync(h, new { task = "sum 2+2" }, _ => FakeReply.Text("4"));
        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), boss, "delegate");
        var child = Assert.Single(response.ToolCalls).ChildRunId!.Value;

        // The child's agentpg_run_finalized, then the parent's, back to back as a listener may deliver them: the child's makes
        // the client read the agent tool's call back from the database, and the parent's removes the parent's callbacks before
        // that read can return (a round trip). The callback taken when the child's notification arrived still fires.
        var completes = new ConcurrentQueue<ToolCallEvent>();
        h.Client.Engine.Callbacks.Register(response.RunId, new RunOptions { OnToolComplete = completes.Enqueue }, transactionId: null);
        var feeds = new RunEventFeeds((_, _, _) => throw new InvalidOperationException("no feed reads in this test"),
            (_, _) => throw new InvalidOperationException("no feed polls in this test"), TimeSpan.FromSeconds(1),
            TimeProvider.System, NullLogger.Instance);
        var router = new NotificationRouter(h.Client.Engine, feeds, () => true);
        router.Route(new Notification(Channels.RunFinalized, child, "streaming", "completed", response.RunId, null));
        router.Route(new Notification(Channels.RunFinalized, response.RunId, "streaming", "completed", null, null));

        await Eventually.TrueAsync(() => !completes.IsEmpty, "the agent tool's OnToolComplete", TimeSpan.FromSeconds(10));
        var e = Assert.Single(completes);
        Assert.Equal(helper, e.ToolName);
        Assert.True(e.IsAgentTool);
        Assert.Equal(response.RunId, e.RunId);
        Assert.Equal("4", e.Output);
    }

    [DatabaseFact]
    public async Task Delegation_InBatchMode_ChildRunsAreBatchRunsToo()
    {
        await using var h = await Harness.StartAsync(db);
        var (boss, _) = await BossAndHelperAsync(h, new { task = "sum 2+2" }, r => FakeReply.Text("helper says 4 for '" + r.LastUserText + "'"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), boss, "delegate"), "the batch hierarchy", TimeSpan.FromSeconds(60));

        Assert.Equal("boss: helper says 4 for 'sum 2+2'", response.Text);
        var child = await h.Client.GetRunAsync(Assert.Single(response.ToolCalls).ChildRunId!.Value);
        Assert.Equal(RunMode.Batch, child.RunMode);
        Assert.All(await h.Client.GetIterationsAsync(child.Id), i => Assert.NotNull(i.BatchId));
    }

    [DatabaseFact]
    public async Task ToolNamedLikeAnAgentNotInAgentIds_IsAnOrdinaryTool()
    {
        var name = Unique("helper");
        var toolCalls = 0;
        await using var h = await Harness.StartAsync(db, tools: new TestTool(name, (_, _, _) => Task.FromResult("plain tool ran " + Interlocked.Increment(ref toolCalls))));
        await Agent(h, name);
        var caller = Unique("caller");
        var callerAgent = await Agent(h, caller, tools: [name]);
        Script(h.Claude, new()
        {
            [caller] = r => r.ToolResults.Count == 0 ? FakeReply.ToolUse(name, new { }) : FakeReply.Text(r.ToolResults[0].Content),
        });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), callerAgent.Id, "go");

        Assert.Equal("plain tool ran 1", response.Text);
        Assert.False(Assert.Single(response.ToolCalls).IsAgentTool);
    }

    [DatabaseFact]
    public async Task Cycle_AToBToA_IsRefusedWithAnErrorToolResult()
    {
        await using var h = await Harness.StartAsync(db);
        string a = Unique("alpha"), b = Unique("beta");
        var agentA = await Agent(h, a);
        var agentB = await Agent(h, b, [agentA.Id]);
        await h.Client.UpdateAgentAsync(agentA with { AgentIds = [agentB.Id] });
        Script(h.Claude, new()
        {
            [a] = r => r.ToolResults.Count == 0 ? FakeReply.ToolUse(b, new { task = "help me" }) : FakeReply.Text("A got: " + r.ToolResults[0].Content),
            [b] = r => r.ToolResults.Count == 0 ? FakeReply.ToolUse(a, new { task = "help me back" }) : FakeReply.Text("B got: " + r.ToolResults[0].Content + " error=" + r.ToolResults[0].IsError),
        });

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agentA.Id, "start"), "the run");

        Assert.StartsWith("A got: B got: Delegation refused:", response.Text, StringComparison.Ordinal);
        Assert.Contains("cycle", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task DepthLimit_RefusesDelegationBeyondMaxAgentDepth()
    {
        await using var h = await Harness.StartAsync(db, o => o.MaxAgentDepth = 1);
        string top = Unique("top"), mid = Unique("mid"), low = Unique("low");
        var lowAgent = await Agent(h, low);
        var midAgent = await Agent(h, mid, [lowAgent.Id]);
        var topAgent = await Agent(h, top, [midAgent.Id]);
        Script(h.Claude, new()
        {
            [top] = r => r.ToolResults.Count == 0 ? FakeReply.ToolUse(mid, new { task = "t" }) : FakeReply.Text("top: " + r.ToolResults[0].Content),
            [mid] = r => r.ToolResults.Count == 0 ? FakeReply.ToolUse(low, new { task = "t" }) : FakeReply.Text("mid: " + r.ToolResults[0].Content),
            [low] = _ => FakeReply.Text("low answered"),
        });

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), topAgent.Id, "go"), "the run");

        Assert.StartsWith("top: mid: Delegation refused:", response.Text, StringComparison.Ordinal);
        Assert.Contains("MaxAgentDepth", response.Text, StringComparison.Ordinal);
        Assert.DoesNotContain(h.Claude.Requests, r => r.IsMessagesCall && RequestBodies.SystemText(r.Body!.Value) == $"You are {low}.");
    }

    [DatabaseFact]
    public async Task DelegateWithoutTask_IsReportedAsInvalidInput()
    {
        await using var h = await Harness.StartAsync(db);
        var (boss, _) = await BossAndHelperAsync(h, new { }, helperReply: null, bossAnswer: content => content);

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), boss, "go");

        Assert.Contains("'task' is required", response.Text, StringComparison.Ordinal);
    }
}
