using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Approvals;

/// <summary>Decisions racing what else touches a waiting request: a delete of its run or session, a cancel of its run, the
/// approval timeout.</summary>
public sealed class ApprovalRaceTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private async Task<(Guid Session, Guid Run, Guid Execution)> WaitingRequestAsync()
    {
        var session = await db.Seed.SessionAsync();
        var run = await db.Seed.RunAsync(session);
        var iteration = await db.Seed.ToolIterationAsync(run);
        var execution = await db.Seed.ToolExecutionAsync(run, iteration, "toolu_1", "issue_refund");
        await db.ExecuteAsync(
            "UPDATE {schema}.agentpg_tool_executions SET state = 'awaiting_approval', approval_required = true WHERE id = $1", execution);
        return (session, run, execution);
    }

    [DatabaseFact]
    public async Task Decision_WhileTheSessionIsDeleted_IsNotFound()
    {
        // The decision reads the request's run, then waits for the run row that the delete holds; the delete commits, and the
        // request is gone. Before, the decision's guarded update found no row and reported "not waiting for approval: already
        // approved, rejected or timed out, or its run was cancelled" (the admin UI's 409), none of which happened.
        var (session, _, execution) = await WaitingRequestAsync();
        await using var client = db.CreateClient();
        await using var deleting = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await deleting.BeginTransactionAsync();
        await using (var delete = new NpgsqlCommand($"DELETE FROM \"{db.Schema}\".agentpg_sessions WHERE id = $1", deleting) { Parameters = { new() { Value = session } } })
        {
            Assert.Equal(1, await delete.ExecuteNonQueryAsync());
        }

        var deciding = client.RejectToolCallAsync(execution, "not this one", "alice");
        await Eventually.TrueAsync(
            async () => deciding.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND pid <> $1 AND query LIKE '%agentpg_decide_tool_approval%'",
                deleting.ProcessID) > 0,
            "the decision waits for the run row the delete holds");
        await transaction.CommitAsync();

        var error = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(deciding, "the decision"));
        Assert.Equal(AgentPgErrorCode.ToolExecutionNotFound, error.Code);
    }

    [DatabaseFact]
    public async Task Expiry_OverTwoChildRunsOfAWatchedRun_WhileAPersonRejectsARequest_NoDeadlock()
    {
        // A watched run delegated to two child runs, each waiting for approvals past the timeout; a person rejects another
        // request of the second child at the same moment. The decision holds the second child's row (its first step) when the
        // expiry pass starts. The pass rejects the first child's request, which appends a live event under the root's head row,
        // then waits for the second child. The decision's rejection appends an event too and waited for the head row: with the
        // pass deciding run by run (lock a run, decide, next run), PostgreSQL aborted one of them with 40P01, the person's
        // RejectToolCallAsync with a raw deadlock error or the whole expiry pass.
        var agent = await db.Seed.AgentAsync();
        var root = await db.Seed.RunAsync(agent: agent);
        await db.Seed.ToolIterationAsync(root);
        var first = await db.Seed.ChildRunAsync(root, agent);
        var second = await db.Seed.ChildRunAsync(root, agent);
        var expiring = new List<Guid>();
        foreach (var child in new[] { first, second })
        {
            var iteration = await db.Seed.ToolIterationAsync(child);
            expiring.Add(await db.Seed.ToolExecutionAsync(child, iteration, "toolu_old", "issue_refund"));
        }

        var decided = await db.Seed.ToolExecutionAsync(second, await db.ScalarAsync<Guid>(
            "SELECT current_iteration_id FROM {schema}.agentpg_runs WHERE id = $1", second), "toolu_new", "issue_refund");
        await db.ExecuteAsync(
            "UPDATE {schema}.agentpg_tool_executions SET state = 'awaiting_approval', approval_required = true, " +
            "created_at = CASE WHEN id = $1 THEN now() - interval '2 hours' WHEN id = $2 THEN now() - interval '1 hour' ELSE now() END " +
            "WHERE id = ANY ($3)", expiring[0], expiring[1], new[] { expiring[0], expiring[1], decided });
        await db.ScalarAsync<Guid>("SELECT {schema}.agentpg_mark_run_watched($1)", root);
        await db.ScalarAsync<Guid>("SELECT {schema}.agentpg_watch_run($1)", root);

        await using var person = await db.DataSource.OpenConnectionAsync();
        await using var leader = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await person.BeginTransactionAsync();
        await ScalarAsync<int>(person, "SELECT 1 FROM {schema}.agentpg_runs WHERE id = $1 FOR NO KEY UPDATE", second);

        var expired = ScalarAsync<int>(leader, "SELECT {schema}.agentpg_expire_tool_approvals(interval '1 minute', 10)");
        await Eventually.TrueAsync(
            async () => expired.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", leader.ProcessID) > 0,
            "the expiry pass waits for the second child's row, which the decision holds");

        var outcome = await ScalarAsync<string>(person, "SELECT {schema}.agentpg_decide_tool_approval($1, false, NULL, 'no', 'alice')", decided);
        await transaction.CommitAsync();

        Assert.Equal("rejected", outcome);
        Assert.Equal(2, await Eventually.WithinAsync(expired, "the expiry pass"));
        Assert.Equal(3L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_run_events WHERE root_run_id = $1 AND kind = 'tool_completed'", root));
    }

    private async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql, params object[] parameters)
    {
        await using var command = new NpgsqlCommand(sql.Replace("{schema}", $"\"{db.Schema}\"", StringComparison.Ordinal), connection);
        foreach (var p in parameters)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = p });
        }

        return (T)(await command.ExecuteScalarAsync())!;
    }

    [DatabaseFact]
    public async Task Approve_RacingACancelOfTheRun_EitherWins_TheToolRunsAtMostOnce_AndTheSessionStaysUsable()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: refunds.Tool());
        var approver = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => r.LastUserText == "just say hi" ? FakeReply.Text("hi") : Refunds.Script(r));
        for (var round = 0; round < 8; round++)
        {
            var session = await h.Client.NewSessionAsync();
            var runId = await h.Client.RunFastAsync(session, agent.Id, "refund");
            var request = await Refunds.PendingAsync(approver, session, TimeSpan.FromSeconds(60));

            var approve = Task.Run(() => approver.ApproveToolCallAsync(request.ToolExecutionId));
            var cancel = Task.Run(() => h.Client.CancelRunAsync(runId));
            try
            {
                await approve;
            }
            catch (AgentPgException ex)
            {
                // The cancel came first and closed the request.
                Assert.Equal(AgentPgErrorCode.ApprovalNotPending, ex.Code);
            }

            await cancel;
            Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(runId)).State);
            Assert.Empty(await approver.GetPendingApprovalsAsync(session));
            // The fake Claude refuses a history with a tool_use and no tool_result: the next run proves the session is valid.
            Assert.Equal("hi", (await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "just say hi"), "the next run")).Text);
        }

        Assert.True(refunds.Calls.Count <= 8, $"{refunds.Calls.Count} refunds for 8 requests");
    }

    [DatabaseFact]
    public async Task Approve_AsTheApprovalTimeoutFires_EitherWins_TheToolRunsOnlyWhenTheApprovalWon()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.ApprovalTimeout = TimeSpan.FromMilliseconds(500);
            o.CleanupInterval = TimeSpan.FromMilliseconds(50);
        }, tools: refunds.Tool());
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(r => Refunds.Script(r));
        var approved = 0;
        for (var round = 0; round < 6; round++)
        {
            var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "refund");
            await Eventually.TrueAsync(async () => (await h.Client.GetRunToolCallsAsync(runId)).Count == 1, "the request is recorded");
            var execution = await db.ScalarAsync<Guid>("SELECT id FROM {schema}.agentpg_tool_executions WHERE run_id = $1", runId);
            // On the database clock, as the leader measures: approve when the timeout is a few milliseconds away.
            await Eventually.TrueAsync(
                async () => await db.ScalarAsync<bool>(
                    "SELECT created_at < now() - interval '480 milliseconds' FROM {schema}.agentpg_tool_executions WHERE id = $1", execution),
                "the request is about to time out", interval: TimeSpan.FromMilliseconds(5));
            string outcome;
            try
            {
                await h.Client.ApproveToolCallAsync(execution);
                approved++;
                outcome = "refunded 40 on A-1";
            }
            catch (AgentPgException ex)
            {
                Assert.Equal(AgentPgErrorCode.ApprovalNotPending, ex.Code);
                outcome = "ERROR The tool call was rejected by the approver: approval timed out";
            }

            Assert.Equal(outcome, (await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the decided run")).Text);
        }

        Assert.Equal(approved, refunds.Calls.Count);
    }

    [DatabaseTheory]
    [InlineData(System.Data.IsolationLevel.RepeatableRead)]
    [InlineData(System.Data.IsolationLevel.Serializable)]
    public async Task Approve_InTheCallersSnapshotTransaction_AfterAnotherDecisionCommitted_IsApprovalNotPending(System.Data.IsolationLevel isolation)
    {
        // The caller's transaction took its snapshot (an audit row, a read) before a rejection committed. Its approval's guarded
        // update then meets a row changed after its snapshot, and PostgreSQL refuses with 40001: the caller got a raw
        // PostgresException instead of being told that the request was already decided.
        var (session, _, execution) = await WaitingRequestAsync();
        await using var client = db.CreateClient();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync(isolation);
        await ScalarAsync<int>(connection, "SELECT count(*)::int FROM {schema}.agentpg_tool_executions WHERE id = $1", execution);

        await client.RejectToolCallAsync(execution, "not this one", "bob");

        var error = await Assert.ThrowsAsync<AgentPgException>(() => client.ApproveToolCallAsync(transaction, execution, null, "ok", "alice"));
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, error.Code);
        Assert.Contains("already rejected by bob", error.Message, StringComparison.Ordinal);
        Assert.Contains("roll", error.Message, StringComparison.Ordinal);
        Assert.Equal(PostgresErrorCodes.SerializationFailure, Assert.IsType<PostgresException>(error.InnerException).SqlState);
        await transaction.RollbackAsync();
        Assert.Equal("rejected", await db.ScalarAsync<string>(
            "SELECT approval_decision FROM {schema}.agentpg_tool_executions WHERE id = $1", execution));
        await DeleteAsync(session);
    }

    [DatabaseTheory]
    [InlineData(System.Data.IsolationLevel.RepeatableRead)]
    [InlineData(System.Data.IsolationLevel.Serializable)]
    public async Task Reject_InTheCallersSnapshotTransaction_WaitingForAnApprovalThatCommits_IsApprovalNotPending(System.Data.IsolationLevel isolation)
    {
        // Both decide in their own transactions: the approval holds the run row, the rejection (its snapshot taken) waits for it;
        // the approval commits and the rejection's update finds the request changed since its snapshot.
        var (session, _, execution) = await WaitingRequestAsync();
        await using var client = db.CreateClient();
        await using var approving = await db.DataSource.OpenConnectionAsync();
        await using var approval = await approving.BeginTransactionAsync();
        await client.ApproveToolCallAsync(approval, execution, null, "ok", "alice");

        await using var rejecting = await db.DataSource.OpenConnectionAsync();
        await using var rejection = await rejecting.BeginTransactionAsync(isolation);
        await ScalarAsync<int>(rejecting, "SELECT count(*)::int FROM {schema}.agentpg_tool_executions WHERE id = $1", execution);
        var deciding = client.RejectToolCallAsync(rejection, execution, "no", "bob");
        await Eventually.TrueAsync(
            async () => deciding.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = $1 AND wait_event_type = 'Lock'", rejecting.ProcessID) > 0,
            "the rejection waits for the run row the approval holds");
        await approval.CommitAsync();

        var error = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(deciding, "the rejection"));
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, error.Code);
        Assert.Contains("already approved by alice", error.Message, StringComparison.Ordinal);
        Assert.IsType<PostgresException>(error.InnerException);
        await rejection.RollbackAsync();
        Assert.Equal("approved", await db.ScalarAsync<string>(
            "SELECT approval_decision FROM {schema}.agentpg_tool_executions WHERE id = $1", execution));
        await DeleteAsync(session);
    }

    [DatabaseTheory]
    [InlineData("repeatable read")]
    [InlineData("serializable")]
    public async Task Reject_OnADatabaseWhoseDefaultIsolationTakesSnapshots_WaitingForAnApprovalThatCommits_IsApprovalNotPending(string level)
    {
        // The library's own transaction inherits default_transaction_isolation: set to repeatable read or serializable (for the
        // database, the role or the connection string), the decision that waited for a concurrent one got 40001 too.
        var (session, _, execution) = await WaitingRequestAsync();
        await using var snapshots = TestDatabase.CreateDataSource(b => b.Options = $"-c default_transaction_isolation={level.Replace(" ", "\\ ", StringComparison.Ordinal)}");
        await using var client = db.CreateClient(snapshots);
        await using (var probe = await snapshots.OpenConnectionAsync())
        {
            Assert.Equal(level, await ScalarAsync<string>(probe, "SHOW default_transaction_isolation"));
        }

        await using var approving = await db.DataSource.OpenConnectionAsync();
        await using var approval = await approving.BeginTransactionAsync();
        await client.ApproveToolCallAsync(approval, execution, null, "ok", "alice");

        var deciding = client.RejectToolCallAsync(execution, "no", "bob");
        await Eventually.TrueAsync(
            async () => deciding.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> $1 AND wait_event_type = 'Lock' AND query LIKE '%agentpg_decide_tool_approval%'",
                approving.ProcessID) > 0,
            "the rejection waits for the run row the approval holds");
        await approval.CommitAsync();

        var error = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(deciding, "the rejection"));
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, error.Code);
        Assert.Contains("already approved by alice", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("roll", error.Message, StringComparison.Ordinal);
        await DeleteAsync(session);
    }

    [DatabaseFact]
    public async Task DelegatorWrites_ListingTheOldNameWhileTheDelegateIsRenamed_AreRefused_NotStored()
    {
        // The rename of the cleaner holds the cleaner's row and waits (its FollowRename) for another delegator's row, which a
        // third connection holds. Meanwhile the boss is updated, and an agent created, to need approval for delegating to the
        // cleaner by the name they read. Both checked that name against the cleaner's row, locked FOR KEY SHARE, which does not
        // wait for the rename's lock: they saw the old name, passed and committed, and after the rename committed they listed a
        // name no call matches: the delegation ran without anyone asked.
        await using var client = db.CreateClient();
        var suffix = Guid.NewGuid().ToString("N")[..6];
        AgentDefinition Agent(string name) => new() { Name = name + "_" + suffix, Model = "claude-sonnet-4-5", Tools = [] };
        var cleaner = await client.CreateAgentAsync(Agent("cleaner"));
        var other = await client.CreateAgentAsync(Agent("other") with { AgentIds = [cleaner.Id], ToolsRequiringApproval = [cleaner.Name] });
        var boss = await client.CreateAgentAsync(Agent("boss") with { AgentIds = [cleaner.Id] });

        await using var holder = await db.DataSource.OpenConnectionAsync();
        await using var held = await holder.BeginTransactionAsync();
        await ScalarAsync<int>(holder, "SELECT 1 FROM {schema}.agentpg_agents WHERE id = $1 FOR UPDATE", other.Id);
        var renaming = client.UpdateAgentAsync(cleaner with { Name = "purger_" + suffix });
        await Eventually.TrueAsync(
            async () => renaming.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> $1 AND wait_event_type = 'Lock' AND query LIKE '%tools_requiring_approval = CASE%'",
                holder.ProcessID) > 0,
            "the rename waits for the other delegator's row");

        var updating = client.UpdateAgentAsync(boss with { ToolsRequiringApproval = [cleaner.Name] });
        var creating = client.CreateAgentAsync(Agent("boss2") with { AgentIds = [cleaner.Id], ToolsRequiringApproval = [cleaner.Name] });
        await Eventually.TrueAsync(
            async () => (updating.IsCompleted && creating.IsCompleted) || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE pid <> $1 AND wait_event_type = 'Lock' AND query LIKE '%FOR SHARE%'",
                holder.ProcessID) == 2,
            "the boss's update and the new agent's creation wait for the cleaner's row, or are done");
        await held.CommitAsync();
        await Eventually.WithinAsync(renaming, "the rename");

        Assert.Contains("purger_" + suffix, (await Assert.ThrowsAsync<ArgumentException>(() => Eventually.WithinAsync(updating, "the boss's update"))).Message,
            StringComparison.Ordinal);
        Assert.Contains("'cleaner_" + suffix + "'", (await Assert.ThrowsAsync<ArgumentException>(() => Eventually.WithinAsync(creating, "the creation"))).Message,
            StringComparison.Ordinal);
        Assert.Null((await client.GetAgentByIdAsync(boss.Id)).ToolsRequiringApproval);
        Assert.Equal(["purger_" + suffix], (await client.GetAgentByIdAsync(other.Id)).ToolsRequiringApproval);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_agents WHERE name = $1", "boss2_" + suffix));
    }

    // An approved execution left pending would be claimed by the tool workers of this class's other tests.
    private Task DeleteAsync(Guid session) => db.ExecuteAsync("DELETE FROM {schema}.agentpg_sessions WHERE id = $1", session);

    [DatabaseFact]
    public async Task Decision_OfADecidedRequest_IsStillNotPending()
    {
        var (_, _, execution) = await WaitingRequestAsync();
        await using var client = db.CreateClient();
        await client.RejectToolCallAsync(execution, "not this one", "alice");

        var error = await Assert.ThrowsAsync<AgentPgException>(() => client.ApproveToolCallAsync(execution, null, "ok", "bob"));
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, error.Code);
    }
}
