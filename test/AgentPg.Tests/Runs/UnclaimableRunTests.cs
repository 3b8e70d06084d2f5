using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.Logging;

namespace AgentPg.Tests.Runs;

/// <summary>A run that no live instance can claim is diagnosed, never a silent infinite wait.</summary>
public sealed class UnclaimableRunTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const int LeaderWarning = 7101;
    private const int LeaderResolved = 7102;
    private const int WaitWarning = 1301;
    private const int WaitDiagnosedClaimable = 1303;

    [DatabaseFact]
    public async Task GetRunDiagnosticsAsync_NoInstanceStarted_SaysNoInstanceIsRunning()
    {
        await using var producer = db.CreateClient();
        var agent = await producer.CreateAgentAsync(Agent(["get_weather"]));
        var runId = await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, "hello");

        var diagnosis = await producer.GetRunDiagnosticsAsync(runId);

        Assert.Equal(runId, diagnosis.RunId);
        Assert.Equal(RunState.Pending, diagnosis.State);
        Assert.Equal(agent.Name, diagnosis.AgentName);
        Assert.Equal(0, diagnosis.LiveInstanceCount);
        Assert.Equal(["get_weather"], diagnosis.MissingTools);
        Assert.False(diagnosis.HasEligibleInstance);
        Assert.True(diagnosis.IsUnclaimable);
        Assert.Contains("No AgentPg instance is running", diagnosis.Problem, StringComparison.Ordinal);
        Assert.Contains("StartAsync", diagnosis.Problem, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task WaitForRunAsync_ProducerWithNoLiveInstance_LogsAWarningAfterTheGracePeriod()
    {
        var logs = new LogCapture();
        await using var producer = db.CreateClient(o =>
        {
            o.LoggerFactory = logs;
            o.RunPollInterval = TimeSpan.FromMilliseconds(50);
        });
        var agent = await producer.CreateAgentAsync(Agent(null));
        var runId = await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, "hello");
        using var stop = new CancellationTokenSource();

        var waiting = producer.WaitForRunAsync(runId, stop.Token);
        await Eventually.TrueAsync(() => logs.WithEventId(WaitWarning).Count > 0, "WaitForRunAsync logged that nobody can claim the run");
        await stop.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting);

        var warning = Assert.Single(logs.WithEventId(WaitWarning));
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains(runId.ToString(), warning.Message, StringComparison.Ordinal);
        Assert.Contains(agent.Name, warning.Message, StringComparison.Ordinal);
        Assert.Contains("No AgentPg instance is running", warning.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task WaitForRunAsync_ClaimableRun_LogsNoWarning()
    {
        var logs = new LogCapture();
        await using var h = await Harness.StartAsync(db, o => o.LoggerFactory = logs);
        var held = new HeldRequest(h.Claude, "slow", _ => FakeReply.Text("done"));
        var agent = await h.AgentAsync();
        var sessionId = await h.Client.NewSessionAsync();
        var first = await h.Client.RunFastAsync(sessionId, agent.Id, "slow");
        var second = await h.Client.RunFastAsync(sessionId, agent.Id, "next");
        await Eventually.WithinAsync(held.Arrived, "the first run's model request");

        // The second run is pending behind the first for longer than the grace period, but it is claimable.
        var waiting = h.Client.WaitForRunAsync(second);
        var diagnosis = await h.Client.GetRunDiagnosticsAsync(second);
        Assert.Equal(first, diagnosis.WaitingForRunId);
        Assert.True(diagnosis.HasEligibleInstance);
        Assert.Null(diagnosis.Problem);
        await Eventually.TrueAsync(() => logs.WithEventId(WaitDiagnosedClaimable).Any(e => e.Message.Contains(second.ToString(), StringComparison.Ordinal)),
            "the wait diagnosed the second run after the grace period");
        held.Release();

        Assert.Equal("done", (await Eventually.WithinAsync(waiting, "the second run")).Text);
        Assert.Empty(logs.WithEventId(WaitWarning));
        Assert.DoesNotContain(logs.WithEventId(LeaderWarning), e => e.Message.Contains(agent.Name, StringComparison.Ordinal));
    }

    [DatabaseFact]
    public async Task Leader_AgentListsAToolNoInstanceRegistered_WarnsOncePerConditionWithRunAgentAndTool()
    {
        var logs = new LogCapture();
        await using var h = await Harness.StartAsync(db, o => o.LoggerFactory = logs, tools: new TestTool("get_weather"));
        var agent = await h.Client.CreateAgentAsync(Agent(["get_weather", "send_invoice"]));
        // Both runs commit together, so the leader's scan sees both or neither (a scan between two commits would report 1).
        Guid runId;
        await using (var connection = await db.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            runId = await h.Client.RunFastAsync(transaction, await h.Client.NewSessionAsync(), agent.Id, "hello");
            await h.Client.RunFastAsync(transaction, await h.Client.NewSessionAsync(), agent.Id, "hello again");
            await transaction.CommitAsync();
        }

        await Eventually.TrueAsync(() => Mentions(logs.WithEventId(LeaderWarning), agent.Name), "the leader warned about the agent's runs");
        var warning = Assert.Single(logs.WithEventId(LeaderWarning), e => e.Message.Contains(agent.Name, StringComparison.Ordinal));
        Assert.Equal(LogLevel.Warning, warning.Level);
        Assert.Contains(runId.ToString(), warning.Message, StringComparison.Ordinal);
        Assert.Contains("send_invoice", warning.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("get_weather", warning.Message, StringComparison.Ordinal);
        Assert.StartsWith("2 pending streaming run(s)", warning.Message, StringComparison.Ordinal);

        var diagnosis = await h.Client.GetRunDiagnosticsAsync(runId);
        Assert.Equal(["send_invoice"], diagnosis.MissingTools);
        Assert.Equal(1, diagnosis.LiveInstanceCount);
        Assert.False(diagnosis.HasEligibleInstance);
        Assert.Contains("send_invoice", diagnosis.Problem, StringComparison.Ordinal);
        Assert.Contains("RegisterTool", diagnosis.Problem, StringComparison.Ordinal);

        // A second condition appears; by the time the leader reports it, it scanned again and did not repeat the first.
        var other = await h.Client.CreateAgentAsync(Agent(["translate"]));
        await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), other.Id, "hello");
        await Eventually.TrueAsync(() => Mentions(logs.WithEventId(LeaderWarning), other.Name), "the leader warned about the second agent");
        Assert.Single(logs.WithEventId(LeaderWarning), e => e.Message.Contains(agent.Name, StringComparison.Ordinal));

        // A worker with both tools starts: the runs are claimed and the leader says the condition cleared.
        h.Claude.Respond((_, _) => Task.FromResult<FakeReply?>(FakeReply.Text("ok")));
        await h.AddClientAsync(tools: [new TestTool("get_weather"), new TestTool("send_invoice")]);
        Assert.Equal("ok", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run, once a worker has its tools")).Text);
        await Eventually.TrueAsync(() => Mentions(logs.WithEventId(LeaderResolved), agent.Name), "the leader reported that the condition cleared");
    }

    [DatabaseFact]
    public async Task GetRunDiagnosticsAsync_ToolsSplitAcrossInstances_SaysNoSingleInstanceHasAll()
    {
        await using var h = await Harness.StartAsync(db, tools: new TestTool("tool_a"));
        await h.AddClientAsync(tools: new TestTool("tool_b"));
        var agent = await h.Client.CreateAgentAsync(Agent(["tool_a", "tool_b"]));
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "hello");

        var diagnosis = await h.Client.GetRunDiagnosticsAsync(runId);

        Assert.Equal(2, diagnosis.LiveInstanceCount);
        Assert.Empty(diagnosis.MissingTools);
        Assert.False(diagnosis.HasEligibleInstance);
        Assert.Contains("every tool of its agent", diagnosis.Problem, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task GetRunDiagnosticsAsync_UnknownRun_ThrowsRunNotFound()
    {
        await using var producer = db.CreateClient();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => producer.GetRunDiagnosticsAsync(Guid.NewGuid()));

        Assert.Equal(AgentPgErrorCode.RunNotFound, ex.Code);
    }

    private static bool Mentions(IReadOnlyList<LogEntry> entries, string text)
        => entries.Any(e => e.Message.Contains(text, StringComparison.Ordinal));

    private static AgentDefinition Agent(IReadOnlyList<string>? tools) => new()
    {
        Name = "agent_" + Guid.NewGuid().ToString("N")[..10],
        Model = "claude-sonnet-4-5",
        Tools = tools,
    };
}
