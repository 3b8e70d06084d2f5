using System.Collections.Concurrent;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Approvals;

public sealed class ApprovalTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static Task<ToolApprovalRequest> PendingAsync(AgentPgClient client, Guid session, string toolName = "issue_refund")
        => Refunds.PendingAsync(client, session, s_timeout, toolName);

    // A started harness whose agent asks for one refund of 40 on A-1 that needs approval (the agent's ToolsRequiringApproval:
    // approval), and that request, waiting.
    /// <summary>An agent with the refund tool, <paramref name="approval"/> requiring approval, and Claude scripted by
    /// <see cref="Refunds.Script"/>.</summary>
    private static async Task<AgentDefinition> RefundAgentAsync(Harness h, string approval = "issue_refund")
    {
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = [approval] });
        h.Claude.Respond(r => Refunds.Script(r));
        return agent;
    }

    private async Task<(Harness H, Guid RunId, ToolApprovalRequest Request)> WaitingRefundAsync(Refunds refunds, string approval = "issue_refund")
    {
        var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var agent = await RefundAgentAsync(h, approval);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund order A-1");
        return (h, runId, await PendingAsync(h.Client, session));
    }

    [DatabaseFact]
    public async Task Approve_FromAnotherClient_RunsTheToolExactlyOnceAndRecordsTheDecision()
    {
        var refunds = new Refunds();
        var lookups = 0;
        await using var h = await Harness.StartAsync(db, tools: [refunds.Tool(), new TestTool("lookup", (_, _, _) => Task.FromResult("looked up " + Interlocked.Increment(ref lookups)))]);
        var producer = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund", "lookup"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => Refunds.Script(r, withLookup: true));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund order A-1");

        var request = await PendingAsync(producer, session);

        // The tool that needs no approval ran meanwhile; the refund did not; the run waits without a holder.
        await Eventually.TrueAsync(async () => (await h.Client.GetRunToolCallsAsync(runId)).Any(c => c.Name == "lookup" && c.State == ToolExecutionState.Completed),
            "the lookup (no approval needed) completed while the refund waits");
        Assert.Empty(refunds.Calls);
        var waiting = await h.Client.GetRunAsync(runId);
        Assert.Equal(RunState.PendingTools, waiting.State);
        Assert.Null(waiting.ClaimedByInstanceId);
        Assert.Equal(runId, request.RunId);
        Assert.Equal(runId, request.RootRunId);
        Assert.Equal(0, request.Depth);
        Assert.Equal(agent.Id, request.AgentId);
        Assert.Equal(40, request.Input.GetProperty("amount").GetInt32());
        var call = Assert.Single(await h.Client.GetRunToolCallsAsync(runId), c => c.Name == "issue_refund");
        Assert.Equal(ToolExecutionState.AwaitingApproval, call.State);
        Assert.True(call.RequiresApproval);
        Assert.Null(call.Approval);

        await producer.ApproveToolCallAsync(request.ToolExecutionId, null, "ok by policy", "alice");
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);

        Assert.Equal("looked up 1 | refunded 40 on A-1", response.Text);
        Assert.Single(refunds.Calls);
        var refund = Assert.Single(response.ToolCalls, c => c.Name == "issue_refund");
        Assert.Equal(ToolExecutionState.Completed, refund.State);
        Assert.True(refund.RequiresApproval);
        Assert.NotNull(refund.Approval);
        Assert.True(refund.Approval.Approved);
        Assert.Equal("ok by policy", refund.Approval.Comment);
        Assert.Equal("alice", refund.Approval.DecidedBy);
        Assert.Null(refund.Approval.OriginalInput);
        Assert.False(Assert.Single(response.ToolCalls, c => c.Name == "lookup").RequiresApproval);
        Assert.Empty(await producer.GetPendingApprovalsAsync(session));
    }

    [DatabaseFact]
    public async Task Reject_TheToolNeverRunsAndClaudeSeesTheReason()
    {
        var refunds = new Refunds();
        var (h, runId, request) = await WaitingRefundAsync(refunds, approval: "*");
        await using var _ = h;

        await h.Client.RejectToolCallAsync(request.ToolExecutionId, "the order was already refunded", "bob");
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run after the rejection", s_timeout);

        Assert.Empty(refunds.Calls);
        Assert.Equal("ERROR The tool call was rejected by the approver: the order was already refunded", response.Text);
        var refund = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Failed, refund.State);
        Assert.True(refund.IsError);
        Assert.False(refund.Approval!.Approved);
        Assert.Equal("the order was already refunded", refund.Approval.Comment);
        Assert.Equal("bob", refund.Approval.DecidedBy);

        // A rejected run regenerates like any other.
        var regenerated = await h.Client.RegenerateRunAsync(runId);
        var second = await PendingAsync(h.Client, request.SessionId);
        Assert.Equal(regenerated, second.RunId);
        await h.Client.ApproveToolCallAsync(second.ToolExecutionId);
        Assert.Equal("refunded 40 on A-1", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(regenerated), "the regenerated run", s_timeout)).Text);
        Assert.Single(refunds.Calls);
    }

    [DatabaseFact]
    public async Task Approve_WithEditedInput_TheToolRunsWithItAndClaudesInputIsKept()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var producer = await h.AddClientAsync(start: false);
        var agent = await RefundAgentAsync(h);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund order A-1");
        var request = await PendingAsync(producer, session);

        // The producer never registered the tool: the schema stored by the worker instance decides.
        var invalid = await Assert.ThrowsAsync<ArgumentException>(() =>
            producer.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { order = "A-1", amount = 9000 })));
        Assert.Contains("still waits for a decision", invalid.Message, StringComparison.Ordinal);
        Assert.Contains("amount", invalid.Message, StringComparison.Ordinal);
        Assert.Equal("input", invalid.ParamName);
        var missing = await Assert.ThrowsAsync<ArgumentException>(() =>
            producer.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { amount = 5 })));
        Assert.Contains("order", missing.Message, StringComparison.Ordinal);
        // Text PostgreSQL cannot store, escaped in the JSON (before: a PostgresException or an InvalidOperationException).
        foreach (var (json, problem) in new[] { ("""{"order":"A-\u0000","amount":5}""", "U+0000"), ("""{"order":"A-\ud800","amount":5}""", "unpaired UTF-16 surrogate") })
        {
            using var document = JsonDocument.Parse(json);
            var unstorable = await Assert.ThrowsAsync<ArgumentException>(() => producer.ApproveToolCallAsync(request.ToolExecutionId, document.RootElement));
            Assert.Equal("input", unstorable.ParamName);
            Assert.StartsWith("The edited input at 'order' contains ", unstorable.Message, StringComparison.Ordinal);
            Assert.Contains(problem, unstorable.Message, StringComparison.Ordinal);
        }

        // Before: InvalidOperationException "Operation is not valid due to the current state of the object." from GetRawText.
        var undefined = await Assert.ThrowsAsync<ArgumentException>(() => producer.ApproveToolCallAsync(request.ToolExecutionId, default(JsonElement)));
        Assert.Equal("input", undefined.ParamName);
        Assert.Contains("pass null to run the tool with Claude's input", undefined.Message, StringComparison.Ordinal);

        Assert.Equal(request.ToolExecutionId, Assert.Single(await producer.GetPendingApprovalsAsync(session)).ToolExecutionId);
        Assert.Empty(refunds.Calls);

        await producer.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { order = "A-1", amount = 25 }), "capped at 25");
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);

        // Claude is told what ran (its tool_use still says 40): the script answers with the tool_result's text.
        Assert.StartsWith("The approver changed the input of this call before it ran; it ran with {", response.Text, StringComparison.Ordinal);
        Assert.Contains("\"amount\": 25", response.Text, StringComparison.Ordinal);
        Assert.EndsWith(" (comment: \"capped at 25\").\n\nrefunded 25 on A-1", response.Text, StringComparison.Ordinal);
        Assert.Equal(25, Assert.Single(refunds.Calls).GetProperty("amount").GetInt32());
        var refund = Assert.Single(response.ToolCalls);
        Assert.Equal(25, refund.Input.GetProperty("amount").GetInt32());
        Assert.Equal(40, refund.Approval!.OriginalInput!.Value.GetProperty("amount").GetInt32());
    }

    [DatabaseTheory]
    [InlineData(RunMode.Streaming)]
    [InlineData(RunMode.Batch)]
    public async Task ParallelCalls_SomeNeedApproval_TheTurnWaitsForEveryDecision_ResultsInToolUseOrder(RunMode mode)
    {
        var refunds = new Refunds();
        var lookups = 0;
        var finished = new ConcurrentQueue<ToolCallEvent>();
        var requested = new ConcurrentQueue<ToolApprovalRequest>();
        await using var h = await Harness.StartAsync(db, o => o.Hooks = new AgentPgHooks
        {
            OnToolCall = (e, _) =>
            {
                finished.Enqueue(e);
                return Task.CompletedTask;
            },
            OnApprovalRequested = (r, _) =>
            {
                requested.Enqueue(r);
                return Task.CompletedTask;
            },
        }, tools: [refunds.Tool(), new TestTool("lookup", (_, _, _) => Task.FromResult("looked up " + Interlocked.Increment(ref lookups)))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund", "lookup"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.Message(
                FakeContentBlock.ToolUse("issue_refund", new { order = "A", amount = 10 }, "toolu_a"),
                FakeContentBlock.ToolUse("lookup", new { }, "toolu_l"),
                FakeContentBlock.ToolUse("issue_refund", new { order = "B", amount = 20 }, "toolu_b"),
                FakeContentBlock.ToolUse("issue_refund", new { order = "C", amount = 30 }, "toolu_c")) with { StopReason = "tool_use" }
            : FakeReply.Text(string.Join(" | ", r.ToolResults.Select(t => t.ToolUseId + "=" + (t.IsError ? "ERROR " : "") + t.Content))));
        var session = await h.Client.NewSessionAsync();
        var runId = mode == RunMode.Batch ? await h.Client.RunAsync(session, agent.Id, "three refunds") : await h.Client.RunFastAsync(session, agent.Id, "three refunds");

        await Eventually.TrueAsync(async () => (await h.Client.GetPendingApprovalsAsync(session)).Count == 3, "three requests");
        var pending = await h.Client.GetPendingApprovalsAsync(session);
        Assert.Equal(["A", "B", "C"], pending.Select(p => p.Input.GetProperty("order").GetString()));
        await Eventually.TrueAsync(() => requested.Count == 3 && lookups == 1, "each request announced once, the lookup run meanwhile");

        // Decided out of order; the turn goes on only after the last decision and the last approved call.
        await h.Client.ApproveToolCallAsync(pending[2].ToolExecutionId);
        await Eventually.TrueAsync(() => refunds.Calls.Count == 1, "the approved refund of C ran");
        await h.Client.RejectToolCallAsync(pending[0].ToolExecutionId, "not A");
        Assert.Equal(RunState.PendingTools, (await h.Client.GetRunAsync(runId)).State);
        Assert.Single(await h.Client.GetPendingApprovalsAsync(session));
        await h.Client.ApproveToolCallAsync(pending[1].ToolExecutionId, JsonSerializer.SerializeToElement(new { order = "B", amount = 5 }), "less");
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run after every decision", s_timeout);

        Assert.Equal("toolu_a=ERROR The tool call was rejected by the approver: not A | toolu_l=looked up 1 | toolu_b=The approver changed the input " +
            "of this call before it ran; it ran with {\"order\": \"B\", \"amount\": 5} (comment: \"less\").\n\nrefunded 5 on B | toolu_c=refunded 30 on C",
            response.Text);
        Assert.Equal([5.0, 30.0], refunds.Calls.Select(c => c.GetProperty("amount").GetDouble()).Order());
        // The rejected call never ran, so no instance reports it.
        await Eventually.TrueAsync(() => finished.Count == 3, "the lookup and the two refunds reported");
        Assert.DoesNotContain(finished, e => e.ToolName == "issue_refund" && e.IsError);
        Assert.Equal(3, requested.Count);
    }

    [DatabaseFact]
    public async Task Approve_ADelegationWithAnEditedTask_TheChildRunGetsTheEdit_AndAnInvalidEditIsRefused()
    {
        await using var h = await Harness.StartAsync(db);
        var cleanerName = "cleaner_" + Guid.NewGuid().ToString("N")[..6];
        var cleaner = await h.AgentAsync(a => a with { Name = cleanerName, SystemPrompt = cleanerName, Tools = [] });
        var boss = await h.AgentAsync(a => a with { Tools = [], AgentIds = [cleaner.Id], ToolsRequiringApproval = [cleanerName] });
        h.Claude.Respond(r => r.SystemText == cleanerName ? FakeReply.Text("did: " + r.LastUserText)
            : r.ToolResults.Count == 0 ? FakeReply.ToolUse(cleanerName, new { task = "delete every order" })
            : FakeReply.Text("boss got: " + r.ToolResults[0].Content));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, boss.Id, "clean up");
        var request = await PendingAsync(h.Client, session, cleanerName);

        var empty = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { task = "" })));
        Assert.Contains("'task'", empty.Message, StringComparison.Ordinal);
        var notAnObject = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new[] { 1 })));
        Assert.Contains("must be a JSON object", notAnObject.Message, StringComparison.Ordinal);
        Assert.Single(await h.Client.GetPendingApprovalsAsync(session));

        await h.Client.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { task = "delete order A-1" }), "only that one");
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved delegation", s_timeout);

        Assert.Equal("boss got: The approver changed the input of this call before it ran; it ran with {\"task\": \"delete order A-1\"} " +
            "(comment: \"only that one\").\n\ndid: delete order A-1", response.Text);
        var delegation = Assert.Single(response.ToolCalls);
        Assert.Equal("delete every order", delegation.Approval!.OriginalInput!.Value.GetProperty("task").GetString());
        Assert.Equal("delete order A-1", (await h.Client.GetRunAsync(delegation.ChildRunId!.Value)).Prompt);
    }

    [DatabaseFact]
    public async Task Approve_WithClaudesOwnInput_TellsClaudeNothingMore()
    {
        var (h, runId, request) = await WaitingRefundAsync(new Refunds());
        await using var _ = h;

        // The same input with its properties in another order: nothing was changed.
        await h.Client.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { amount = 40, order = "A-1" }), "fine");
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);

        Assert.Equal("refunded 40 on A-1", response.Text);
    }

    [DatabaseFact]
    public async Task Decisions_Twice_Unknown_AndConcurrent_ExactlyOneWins()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var other = await h.AddClientAsync(start: false);
        var agent = await RefundAgentAsync(h);

        var unknown = Guid.NewGuid();
        Assert.Equal(AgentPgErrorCode.ToolExecutionNotFound, (await Assert.ThrowsAsync<AgentPgException>(() => h.Client.ApproveToolCallAsync(unknown))).Code);
        Assert.Equal(AgentPgErrorCode.ToolExecutionNotFound, (await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RejectToolCallAsync(unknown, "no"))).Code);
        Assert.Equal(AgentPgErrorCode.ToolExecutionNotFound, (await Assert.ThrowsAsync<AgentPgException>(() =>
            h.Client.ApproveToolCallAsync(unknown, JsonSerializer.SerializeToElement(new { order = "x", amount = 1 })))).Code);
        await Assert.ThrowsAsync<ArgumentException>(() => h.Client.RejectToolCallAsync(unknown, " "));

        for (var round = 0; round < 5; round++)
        {
            var session = await h.Client.NewSessionAsync();
            var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
            var request = await PendingAsync(other, session);

            var approve = Task.Run(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId));
            var reject = Task.Run(() => other.RejectToolCallAsync(request.ToolExecutionId, "no"));
            var outcomes = await Task.WhenAll(Outcome(approve), Outcome(reject));

            Assert.Single(outcomes, o => o is null);
            Assert.Equal(AgentPgErrorCode.ApprovalNotPending, Assert.Single(outcomes, o => o is not null));
            var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the decided run", s_timeout);
            var approved = outcomes[0] is null;
            Assert.Equal(approved, Assert.Single(response.ToolCalls).Approval!.Approved);
            Assert.Equal(approved ? "refunded 40 on A-1" : "ERROR The tool call was rejected by the approver: no", response.Text);

            // Deciding again, either way, after the run moved on.
            Assert.Equal(AgentPgErrorCode.ApprovalNotPending, (await Assert.ThrowsAsync<AgentPgException>(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId))).Code);
            Assert.Equal(AgentPgErrorCode.ApprovalNotPending, (await Assert.ThrowsAsync<AgentPgException>(() => other.RejectToolCallAsync(request.ToolExecutionId, "late"))).Code);
        }

        static async Task<AgentPgErrorCode?> Outcome(Task decision)
        {
            try
            {
                await decision;
                return null;
            }
            catch (AgentPgException ex)
            {
                return ex.Code;
            }
        }
    }

    [DatabaseFact]
    public async Task ApprovalNotPending_SaysWhy_AndAWrongIdIsNotCalledDecided()
    {
        // Before, every refusal read "it was already approved, rejected or timed out, or its run was cancelled" — also for the
        // id of a call that never needed approval (a lookup's, picked from the wrong column), which nobody had decided.
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: [refunds.Tool(), new TestTool("lookup", (_, _, _) => Task.FromResult("looked up"))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund", "lookup"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => Refunds.Script(r, withLookup: true));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
        var request = await PendingAsync(h.Client, session);
        var lookup = await db.ScalarAsync<Guid>("SELECT id FROM {schema}.agentpg_tool_executions WHERE run_id = $1 AND tool_name = 'lookup'", runId);

        var never = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.ApproveToolCallAsync(lookup));
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, never.Code);
        Assert.Contains("it never waited for one: its agent did not list 'lookup' in ToolsRequiringApproval", never.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("already", never.Message, StringComparison.Ordinal);
        var edited = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.ApproveToolCallAsync(lookup, JsonSerializer.SerializeToElement(new { })));
        Assert.Contains("it never waited for one", edited.Message, StringComparison.Ordinal);

        await h.Client.ApproveToolCallAsync(request.ToolExecutionId, null, null, "alice");
        var again = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RejectToolCallAsync(request.ToolExecutionId, "no", "bob"));
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, again.Code);
        Assert.Matches(@"it was already approved by alice at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \(it is \w+ now\)", again.Message);
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);

        var secondRun = await h.Client.RunFastAsync(session, agent.Id, "refund again");
        var second = await Refunds.PendingAsync(h.Client, session, s_timeout);
        await h.Client.CancelRunAsync(secondRun);
        var cancelled = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.ApproveToolCallAsync(second.ToolExecutionId));
        Assert.Contains("its run was cancelled before anyone decided (it is Skipped)", cancelled.Message, StringComparison.Ordinal);

        var unknown = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.ApproveToolCallAsync(Guid.NewGuid()));
        Assert.Equal(AgentPgErrorCode.ToolExecutionNotFound, unknown.Code);
        Assert.Contains("GetPendingApprovalsAsync lists the ids that wait for a decision", unknown.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task InCallersTransaction_RolledBackStaysPending_CommittedProceedsWithTheBusinessRow()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        await db.ExecuteAsync("CREATE TABLE IF NOT EXISTS {schema}.refund_audit (execution_id uuid PRIMARY KEY, approver text NOT NULL)");
        var agent = await RefundAgentAsync(h);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
        var request = await PendingAsync(h.Client, session);

        await using (var connection = await db.DataSource.OpenConnectionAsync())
        {
            await using var rollback = await connection.BeginTransactionAsync();
            await AuditAsync(connection, rollback, request.ToolExecutionId);
            await h.Client.ApproveToolCallAsync(rollback, request.ToolExecutionId, null, "approved then rolled back");
            await rollback.RollbackAsync();
        }

        Assert.Single(await h.Client.GetPendingApprovalsAsync(session));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.refund_audit"));
        Assert.Equal(RunState.PendingTools, (await h.Client.GetRunAsync(runId)).State);
        Assert.Empty(refunds.Calls);

        await using (var connection = await db.DataSource.OpenConnectionAsync())
        {
            await using var commit = await connection.BeginTransactionAsync();
            await AuditAsync(connection, commit, request.ToolExecutionId);
            await h.Client.ApproveToolCallAsync(commit, request.ToolExecutionId, null, "approved", "carol");
            await commit.CommitAsync();
        }

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run approved in a committed transaction", s_timeout);
        Assert.Equal("refunded 40 on A-1", response.Text);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.refund_audit"));
        Assert.Equal("carol", Assert.Single(response.ToolCalls).Approval!.DecidedBy);

        async Task AuditAsync(Npgsql.NpgsqlConnection connection, Npgsql.NpgsqlTransaction transaction, Guid executionId)
        {
            await using var insert = new Npgsql.NpgsqlCommand($"INSERT INTO \"{db.Schema}\".refund_audit VALUES ($1, 'carol')", connection, transaction);
            insert.Parameters.Add(new Npgsql.NpgsqlParameter { Value = executionId });
            await insert.ExecuteNonQueryAsync();
        }
    }

    [DatabaseFact]
    public async Task RejectInCallersTransaction_RolledBackStaysPending()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var agent = await RefundAgentAsync(h);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
        var request = await PendingAsync(h.Client, session);

        await using (var connection = await db.DataSource.OpenConnectionAsync())
        {
            await using var transaction = await connection.BeginTransactionAsync();
            await h.Client.RejectToolCallAsync(transaction, request.ToolExecutionId, "rolled back");
            await transaction.RollbackAsync();
        }

        Assert.Single(await h.Client.GetPendingApprovalsAsync(session));
        await using (var connection = await db.DataSource.OpenConnectionAsync())
        {
            await using var transaction = await connection.BeginTransactionAsync();
            await h.Client.RejectToolCallAsync(transaction, request.ToolExecutionId, "not allowed", "dave");
            await transaction.CommitAsync();
        }

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the rejected run", s_timeout);
        Assert.Empty(refunds.Calls);
        Assert.Equal("dave", Assert.Single(response.ToolCalls).Approval!.DecidedBy);
    }

    [DatabaseFact]
    public async Task ApprovalTimeout_TheLeaderRejectsWithApprovalTimedOut()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.ApprovalTimeout = TimeSpan.FromMilliseconds(300);
            o.CleanupInterval = TimeSpan.FromMilliseconds(200);
        }, tools: refunds.Tool());
        var agent = await RefundAgentAsync(h);

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "refund"), "the timed-out run", s_timeout);

        Assert.Empty(refunds.Calls);
        Assert.Equal("ERROR The tool call was rejected by the approver: approval timed out", response.Text);
        var refund = Assert.Single(response.ToolCalls);
        Assert.False(refund.Approval!.Approved);
        Assert.Equal("approval timed out", refund.Approval.Comment);
        Assert.Null(refund.Approval.DecidedBy);
    }

    [DatabaseFact]
    public async Task Cancel_WhileWaiting_ClosesTheRequestAndTheSessionStaysValid()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => r.LastUserText == "just say hi" ? FakeReply.Text("hi") : Refunds.Script(r));
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
        var request = await PendingAsync(h.Client, session);

        await h.Client.CancelRunAsync(runId);

        Assert.Empty(await h.Client.GetPendingApprovalsAsync(session));
        Assert.Equal(ToolExecutionState.Skipped, Assert.Single(await h.Client.GetRunToolCallsAsync(runId)).State);
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, (await Assert.ThrowsAsync<AgentPgException>(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId))).Code);
        var messages = await h.Client.GetMessagesAsync(session);
        var result = messages[^1].Content.Single();
        Assert.Equal(ContentTypes.ToolResult, result.Type);
        Assert.True(result.IsError);
        Assert.Equal("cancelled", result.ToolContent);

        // The fake Claude refuses a history with a tool_use and no tool_result: the next run proves it is valid.
        var next = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "just say hi"), "the next run", s_timeout);
        Assert.Equal("hi", next.Text);
        Assert.Empty(refunds.Calls);
    }

    [DatabaseFact]
    public async Task BatchRun_TheNextBatchIsSubmittedAfterTheDecision()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var agent = await RefundAgentAsync(h);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunAsync(session, agent.Id, "refund");
        var request = await PendingAsync(h.Client, session);
        var batchesBefore = h.Claude.Requests.Count(r => r.Method == "POST" && r.Path == "/v1/messages/batches");
        Assert.Equal(1, batchesBefore);

        await h.Client.ApproveToolCallAsync(request.ToolExecutionId);
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the batch run after approval", s_timeout);

        Assert.Equal("refunded 40 on A-1", response.Text);
        Assert.Equal(2, h.Claude.Requests.Count(r => r.Method == "POST" && r.Path == "/v1/messages/batches"));
        Assert.All(await h.Client.GetIterationsAsync(runId), i => Assert.NotNull(i.BatchId));
    }

    [DatabaseFact]
    public async Task Hook_OnApprovalRequested_IsCalledOnceWithTheRequest()
    {
        var refunds = new Refunds();
        var requested = new ConcurrentQueue<ToolApprovalRequest>();
        await using var h = await Harness.StartAsync(db, o => o.Hooks = new AgentPgHooks
        {
            OnApprovalRequested = (r, _) =>
            {
                requested.Enqueue(r);
                return Task.CompletedTask;
            },
        }, tools: refunds.Tool());
        var agent = await RefundAgentAsync(h);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
        var request = await PendingAsync(h.Client, session);

        await Eventually.TrueAsync(() => !requested.IsEmpty, "OnApprovalRequested is called");
        Assert.Equal(request, Assert.Single(requested) with { Input = request.Input });
        Assert.Equal(40, Assert.Single(requested).Input.GetProperty("amount").GetInt32());
        await h.Client.ApproveToolCallAsync(request.ToolExecutionId);
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);
        Assert.Single(requested);
    }

    [DatabaseFact]
    public async Task Depth_AnAgentToolAndAGrandchildsToolWaitForApproval_ListedWithDepthAndRoot_ApprovingCompletesTheTree()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var producer = await h.AddClientAsync(start: false);
        string boss = "boss_" + Guid.NewGuid().ToString("N")[..6], manager = "manager_" + Guid.NewGuid().ToString("N")[..6],
            clerk = "clerk_" + Guid.NewGuid().ToString("N")[..6];
        var clerkAgent = await h.AgentAsync(a => a with { Name = clerk, SystemPrompt = clerk, Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        var managerAgent = await h.AgentAsync(a => a with { Name = manager, SystemPrompt = manager, Tools = [], AgentIds = [clerkAgent.Id] });
        // The delegation itself needs approval: the manager's child run may only exist after it.
        var bossAgent = await h.AgentAsync(a => a with { Name = boss, SystemPrompt = boss, Tools = [], AgentIds = [managerAgent.Id], ToolsRequiringApproval = [manager] });
        h.Claude.Respond(r =>
        {
            var next = r.SystemText == boss ? manager : r.SystemText == manager ? clerk : null;
            if (r.ToolResults.Count > 0)
            {
                return FakeReply.Text(r.SystemText + " got: " + r.ToolResults[0].Content);
            }

            return next is null ? Refunds.Script(r) : FakeReply.ToolUse(next, new { task = "refund A-1" });
        });
        var session = await h.Client.NewSessionAsync();
        var rootId = await h.Client.RunFastAsync(session, bossAgent.Id, "handle the refund");

        var delegation = await PendingAsync(producer, session, manager);
        Assert.Equal(0, delegation.Depth);
        Assert.Null(Assert.Single(await h.Client.GetRunToolCallsAsync(rootId)).ChildRunId);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));
        await producer.ApproveToolCallAsync(delegation.ToolExecutionId);

        var refund = await PendingAsync(producer, session);
        Assert.Equal(2, refund.Depth);
        Assert.Equal(rootId, refund.RootRunId);
        Assert.NotEqual(rootId, refund.RunId);
        var clerkRun = await h.Client.GetRunAsync(refund.RunId);
        Assert.Equal(clerkAgent.Id, clerkRun.AgentId);
        Assert.Equal(refund.RunId, Assert.Single(await producer.GetPendingApprovalsAsync()).RunId);
        Assert.Empty(refunds.Calls);

        await producer.ApproveToolCallAsync(refund.ToolExecutionId);
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(rootId), "the whole tree", s_timeout);

        Assert.Equal($"{boss} got: {manager} got: {clerk} got: refunded 40 on A-1", response.Text);
        Assert.Single(refunds.Calls);
        Assert.True(Assert.Single(response.ToolCalls).Approval!.Approved);
    }

    [DatabaseFact]
    public async Task Durability_EveryClientStoppedWhileWaiting_ApprovalGiven_ANewClientCompletesTheRun()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var approver = await h.AddClientAsync(start: false);
        var agent = await RefundAgentAsync(h);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
        var request = await PendingAsync(approver, session);

        await h.Client.StopAsync();
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances"));
        await approver.ApproveToolCallAsync(request.ToolExecutionId, null, "approved while nobody worked");
        Assert.Equal(RunState.PendingTools, (await approver.GetRunAsync(runId)).State);

        await h.AddClientAsync(tools: refunds.Tool());
        var response = await Eventually.WithinAsync(approver.WaitForRunAsync(runId), "the run on the new client", s_timeout);
        Assert.Equal("refunded 40 on A-1", response.Text);
        Assert.Single(refunds.Calls);
    }

    [DatabaseFact]
    public async Task TenThousandRunsAwaitingApproval_HoldNoSlots_ANewRunOnTheSameClientStartsAtOnce()
    {
        const int waiting = 10_000;
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.MaxConcurrentTools = 2;
            o.MaxConcurrentStreamingRuns = 2;
            o.MaxConcurrentRuns = 2;
        }, start: false, tools: refunds.Tool());
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        var tenant = "bulk_" + Guid.NewGuid().ToString("N")[..6];

        // Runs that waited in pending_tools before the client started, as Claude's answers left them: one refund call each.
        await db.ExecuteAsync("""
            WITH s AS (INSERT INTO {schema}.agentpg_sessions (metadata)
                       SELECT jsonb_build_object('tenant', $2::text) FROM generate_series(1, $3::int) RETURNING id)
            INSERT INTO {schema}.agentpg_runs (session_id, agent_id, prompt, run_mode, state, current_iteration, started_at)
            SELECT id, $1::uuid, 'refund', 'streaming', 'pending_tools', 1, now() FROM s
            """, agent.Id, tenant, waiting);
        await db.ExecuteAsync("""
            INSERT INTO {schema}.agentpg_iterations (run_id, iteration_number, has_tool_use, tool_execution_count, stop_reason, completed_at)
            SELECT r.id, 1, TRUE, 1, 'tool_use', now() FROM {schema}.agentpg_runs r WHERE r.agent_id = $1::uuid
            """, agent.Id);
        await db.ExecuteAsync("""
            UPDATE {schema}.agentpg_runs r SET current_iteration_id = i.id FROM {schema}.agentpg_iterations i WHERE i.run_id = r.id AND r.agent_id = $1::uuid
            """, agent.Id);
        await db.ExecuteAsync("""
            INSERT INTO {schema}.agentpg_tool_executions (run_id, iteration_id, tool_use_id, tool_name, tool_input, state, approval_required)
            SELECT i.run_id, i.id, 'toolu_bulk_' || i.id, 'issue_refund', '{"order": "B-1", "amount": 1}', 'awaiting_approval', TRUE
              FROM {schema}.agentpg_iterations i JOIN {schema}.agentpg_runs r ON r.id = i.run_id WHERE r.agent_id = $1::uuid
            """, agent.Id);

        await h.Client.StartAsync();
        var plain = await h.AgentAsync(a => a with { Tools = [] });
        h.Claude.Respond(_ => FakeReply.Text("still responsive"));
        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), plain.Id, "hello"),
            "a new run on the client that holds 10 000 runs awaiting approval", s_timeout);

        Assert.Equal("still responsive", response.Text);
        Assert.Empty(refunds.Calls);
        Assert.Equal((long)waiting, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE state = 'awaiting_approval'"));
        Assert.Equal((long)waiting, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE state = 'pending_tools' AND claimed_by_instance_id IS NULL"));
        var inbox = await h.Client.GetPendingApprovalsAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant }, limit: 1000);
        Assert.Equal(1000, inbox.Count);
        Assert.All(inbox, r => Assert.Equal(r.RunId, r.RootRunId));
        Assert.Empty(await h.Client.GetPendingApprovalsAsync(metadata: new Dictionary<string, object?> { ["tenant"] = "someone else" }));
    }

    [DatabaseFact]
    public async Task AgentDefinition_ToolsRequiringApproval_IsStoredAndValidated()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var stored = await h.AgentAsync(a => a with { Tools = ["issue_refund", "lookup"], ToolsRequiringApproval = ["issue_refund"] });
        Assert.Equal(["issue_refund"], (await h.Client.GetAgentByIdAsync(stored.Id)).ToolsRequiringApproval);
        var everything = await h.AgentAsync(a => a with { Tools = null, ToolsRequiringApproval = ["*", "anything_registered_later"] });
        Assert.Equal(["*", "anything_registered_later"], everything.ToolsRequiringApproval);
        Assert.Null((await h.AgentAsync()).ToolsRequiringApproval);

        var typo = await Assert.ThrowsAsync<ArgumentException>(() => h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refnud"] }));
        Assert.Contains("'issue_refnud'", typo.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => h.AgentAsync(a => a with { ToolsRequiringApproval = ["not a name"] }));
        await Assert.ThrowsAsync<ArgumentException>(() => h.AgentAsync(a => a with { Tools = ["x"], ToolsRequiringApproval = ["x", "x"] }));

        // A delegate agent's name is a valid entry; updating validates too.
        var helper = await h.AgentAsync(a => a with { Name = "helper_" + Guid.NewGuid().ToString("N")[..6] });
        var boss = await h.AgentAsync(a => a with { Tools = [], AgentIds = [helper.Id], ToolsRequiringApproval = [helper.Name] });
        Assert.Equal([helper.Name], boss.ToolsRequiringApproval);
        await Assert.ThrowsAsync<ArgumentException>(() => h.Client.UpdateAgentAsync(boss with { ToolsRequiringApproval = ["nobody"] }));
        await h.Client.UpdateAgentAsync(boss with { ToolsRequiringApproval = null });
        Assert.Null((await h.Client.GetAgentByIdAsync(boss.Id)).ToolsRequiringApproval);
    }

    [DatabaseFact]
    public async Task WhatClaudeReadsOfADecision_OverMaxToolOutputLength_IsRefused_AndTheRequestKeepsWaiting()
    {
        // Claude reads a rejection reason (and an edited input's note) with every later request of the session, and compaction
        // keeps them whole. Before, a reason of 2 000 000 characters was taken: the run failed with "The conversation no longer
        // fits Claude's context window (prompt is too long: 500074 tokens > 200000 maximum)", and so would every later run of
        // the session, while a tool's own error is cut to MaxToolOutputLength.
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, o => o.MaxToolOutputLength = 1000, tools: refunds.Tool());
        var agent = await RefundAgentAsync(h);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
        var request = await PendingAsync(h.Client, session);

        var reason = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.RejectToolCallAsync(request.ToolExecutionId, new string('x', 1001)));
        Assert.Equal("reason", reason.ParamName);
        Assert.StartsWith("The rejection reason has 1001 characters, more than AgentPgOptions.MaxToolOutputLength (1000)", reason.Message, StringComparison.Ordinal);
        var edit = JsonSerializer.SerializeToElement(new { order = "A-1 " + new string('y', 900), amount = 10 });
        var input = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId, edit, new string('z', 100)));
        Assert.Equal("input", input.ParamName);
        Assert.Contains("still waits for a decision", input.Message, StringComparison.Ordinal);
        Assert.Equal(request.ToolExecutionId, Assert.Single(await h.Client.GetPendingApprovalsAsync(session)).ToolExecutionId);
        Assert.Empty(refunds.Calls);

        // At the limit: taken, and Claude reads all of it.
        var longest = new string('x', 1000);
        await h.Client.RejectToolCallAsync(request.ToolExecutionId, longest);
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run after the rejection", s_timeout);
        Assert.Equal("ERROR The tool call was rejected by the approver: " + longest, response.Text);
    }

    [DatabaseFact]
    public async Task RenamingADelegate_ItsDelegatorsApprovalFollowsTheNewName_TheDelegationStillWaits()
    {
        // The boss may only delegate to the cleaner with a person's approval, listed by the cleaner's name. Renaming the cleaner
        // renames the delegate tool Claude calls. Before, the boss kept the old name, which no longer matched any call: the
        // delegation ran at once, without anyone asked, and nothing said so (a typo in the list is refused for this reason).
        await using var h = await Harness.StartAsync(db);
        var suffix = Guid.NewGuid().ToString("N")[..6];
        var cleaner = await h.AgentAsync(a => a with { Name = "cleaner_" + suffix, SystemPrompt = "cleaner", Tools = [] });
        var other = await h.AgentAsync(a => a with { Name = "other_" + suffix, SystemPrompt = "other", Tools = [] });
        var boss = await h.AgentAsync(a => a with
        {
            Name = "boss_" + suffix, SystemPrompt = "boss", Tools = [], AgentIds = [cleaner.Id, other.Id], ToolsRequiringApproval = [other.Name, cleaner.Name],
        });
        // A delegator that lists the new name already (a tool name, its Tools being null) keeps it once.
        var broad = await h.AgentAsync(a => a with
        {
            Name = "broad_" + suffix, Tools = null, AgentIds = [cleaner.Id], ToolsRequiringApproval = [cleaner.Name, "purger_" + suffix],
        });
        var unrelated = await h.AgentAsync(a => a with { Name = "unrelated_" + suffix, Tools = ["x"], ToolsRequiringApproval = ["x"] });

        await h.Client.UpdateAgentAsync(cleaner with { Name = "purger_" + suffix });

        Assert.Equal([other.Name, "purger_" + suffix], (await h.Client.GetAgentByIdAsync(boss.Id)).ToolsRequiringApproval);
        Assert.Equal(["purger_" + suffix], (await h.Client.GetAgentByIdAsync(broad.Id)).ToolsRequiringApproval);
        Assert.Equal(["x"], (await h.Client.GetAgentByIdAsync(unrelated.Id)).ToolsRequiringApproval);
        h.Claude.Respond(r => r.SystemText switch
        {
            "cleaner" => FakeReply.Text("deleted everything"),
            _ when r.ToolResults.Count > 0 => FakeReply.Text("boss got: " + r.ToolResults[0].Content),
            _ => FakeReply.ToolUse("purger_" + suffix, new { task = "delete everything" }),
        });
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, boss.Id, "clean up");

        var request = await PendingAsync(h.Client, session, "purger_" + suffix);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));
        await h.Client.RejectToolCallAsync(request.ToolExecutionId, "not today");
        Assert.Equal("boss got: The tool call was rejected by the approver: not today",
            (await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run after the rejection", s_timeout)).Text);

        // A rename that keeps the name changes nobody else.
        var before = (await h.Client.GetAgentByIdAsync(boss.Id)).UpdatedAt;
        await h.Client.UpdateAgentAsync((await h.Client.GetAgentByIdAsync(cleaner.Id)) with { Description = "cleans" });
        Assert.Equal(before, (await h.Client.GetAgentByIdAsync(boss.Id)).UpdatedAt);
    }

    [Fact]
    public void Options_ApprovalTimeout_MustBePositive()
    {
        Assert.Contains(new AgentPgOptions { ApprovalTimeout = TimeSpan.Zero }.Validate(), e => e.Contains("ApprovalTimeout", StringComparison.Ordinal));
        Assert.DoesNotContain(new AgentPgOptions { ApprovalTimeout = TimeSpan.FromDays(7) }.Validate(), e => e.Contains("ApprovalTimeout", StringComparison.Ordinal));
        Assert.Null(new AgentPgOptions().ApprovalTimeout);
    }
}
