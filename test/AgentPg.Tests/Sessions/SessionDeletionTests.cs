using System.Data;
using AgentPg.Testing;
using AgentPg.Tests.Approvals;
using AgentPg.Tests.EntityFrameworkCore;
using AgentPg.Tests.Infrastructure;
using Microsoft.EntityFrameworkCore;
using Npgsql;

namespace AgentPg.Tests.Sessions;

/// <summary><see cref="AgentPgClient.DeleteSessionAsync(Guid, CancellationToken)"/>: everything of a session goes, nothing of
/// another; a session with a run that is not finished is refused, including one created while the deletion waited.</summary>
public sealed class SessionDeletionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string SummarizerPrompt = "You summarise conversations";
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static TestTool Fetch() => new("fetch", (_, input, _) => Task.FromResult($"page {input.GetProperty("n")}: " + new string('x', 400)),
        new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["n"] = new() { Type = "integer" } }, Required = ["n"] });

    [DatabaseFact]
    public async Task DeleteSession_WithRunsToolsApprovalsDelegationCompactionEventsAndAChildSession_LeavesNothingOfIt_AndKeepsOtherSessions()
    {
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: [Fetch(), refunds.Tool()]);
        var childName = "helper_" + Guid.NewGuid().ToString("N")[..8];
        var child = await h.AgentAsync(a => a with { Name = childName, SystemPrompt = childName, Description = "Helps.", Tools = [] });
        var agent = await h.AgentAsync(a => a with { Tools = ["fetch", "issue_refund"], AgentIds = [child.Id], ToolsRequiringApproval = ["issue_refund"] });
        h.Claude.Respond(request =>
        {
            if (request.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal))
            {
                return FakeReply.Text("SUMMARY of the earlier turns");
            }

            if (request.SystemText == childName)
            {
                return FakeReply.Text("child done");
            }

            if (request.ToolResults.Count > 0)
            {
                return FakeReply.Text("answer: " + request.ToolResults[0].Content);
            }

            return request.LastUserText switch
            {
                "delegate" => FakeReply.ToolUse(childName, new { task = "help me" }),
                "refund" => FakeReply.ToolUse("issue_refund", new { order = "A-1", amount = 40 }),
                _ => FakeReply.ToolUse("fetch", new { n = request.LastUserText.Length }),
            };
        });

        var session = await h.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["user"] = "erase-me" });
        var childSession = await h.Client.NewSessionAsync(session);
        var other = await h.Client.NewSessionAsync();
        foreach (var (s, prompt) in new[] { (session, "question one"), (session, "question two"), (session, "question three"), (session, "delegate"),
                     (childSession, "in the child session"), (other, "another user's question") })
        {
            await Eventually.WithinAsync(h.Client.RunFastSyncAsync(s, agent.Id, prompt), prompt, s_timeout);
        }

        // A run watched from its start (live events stored) whose tool call waits for an approval, then is approved.
        var refundRun = await h.Client.RunFastAsync(session, agent.Id, "refund");
        var watched = new List<RunEvent>();
        var watching = Task.Run(async () =>
        {
            await foreach (var e in h.Client.WatchRunAsync(refundRun))
            {
                watched.Add(e);
            }
        });
        var request = await Refunds.PendingAsync(h.Client, session, s_timeout);
        await h.Client.ApproveToolCallAsync(request.ToolExecutionId);
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(refundRun), "the approved refund", s_timeout);
        await Eventually.WithinAsync(watching, "the watch of the refund run", s_timeout);
        Assert.Contains(watched, e => e is RunFinishedEvent);

        var compaction = await h.Client.CompactAsync(session, new CompactionOptions
        {
            Strategy = CompactionStrategy.Summarization,
            ProtectedTokens = 50,
            PreserveLastN = 2,
            TargetTokens = 100,
            MaxTokensForModel = 200_000,
        });
        Assert.True(compaction.SummaryCreated);

        var tree = new[] { session, childSession };
        var treeRuns = await RunIdsAsync(tree);
        var before = await CountsAsync(tree, treeRuns);
        Assert.All(["runs", "child runs", "messages", "iterations", "tool executions", "approvals", "compaction events", "archived messages", "run events"],
            what => Assert.True(before[what] > 0, $"the session has {what} before its deletion"));
        var otherBefore = await CountsAsync([other], await RunIdsAsync([other]));

        await h.Client.DeleteSessionAsync(session);

        Assert.All(await CountsAsync(tree, treeRuns), c => Assert.True(c.Value == 0, $"{c.Value} {c.Key} of the deleted sessions are left"));
        Assert.Equal(otherBefore, await CountsAsync([other], await RunIdsAsync([other])));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", tree));
        var gone = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.GetSessionAsync(childSession));
        Assert.Equal(AgentPgErrorCode.SessionNotFound, gone.Code);
        var again = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.DeleteSessionAsync(session));
        Assert.Equal(AgentPgErrorCode.SessionNotFound, again.Code);
        Assert.Equal(session, again.SessionId);

        // The agents stay, and a session of theirs works as before.
        Assert.StartsWith("answer: page 10: xxx", (await h.Client.RunFastSyncAsync(other, agent.Id, "afterwards")).Text, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task DeleteSession_WithARunNotFinished_HereOrInAChildSession_IsRefusedNamingIt_AndDeletesNothing_UntilTheRunIsCancelled()
    {
        await using var client = db.CreateClient();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "del_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await client.NewSessionAsync();
        var childSession = await client.NewSessionAsync(session);
        var pending = await client.RunFastAsync(childSession, agent.Id, "nobody claims this run");

        var busy = await Assert.ThrowsAsync<AgentPgException>(() => client.DeleteSessionAsync(session));

        Assert.Equal(AgentPgErrorCode.SessionBusy, busy.Code);
        Assert.Equal(session, busy.SessionId);
        Assert.Contains($"has 1 run that is not finished ({pending})", busy.Message, StringComparison.Ordinal);
        Assert.Contains("CancelRunAsync", busy.Message, StringComparison.Ordinal);
        Assert.Equal(new[] { pending }, Assert.IsType<Guid[]>(busy.Context["run_ids"]));
        Assert.Equal(2L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { session, childSession }));
        Assert.Equal(RunState.Pending, (await client.GetRunAsync(pending)).State);

        await client.CancelRunAsync(pending);
        await client.DeleteSessionAsync(session);

        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = $1", pending));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { session, childSession }));
    }

    [DatabaseFact]
    public async Task DeleteSession_ARunCreatedWhileTheDeletionWaitsForTheSession_IsSeen_AndTheDeletionRefused()
    {
        await using var client = db.CreateClient();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "del_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await client.NewSessionAsync();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        var run = await client.RunFastAsync(transaction, session, agent.Id, "created in a transaction still open");

        var deletion = client.DeleteSessionAsync(session);
        await WaitUntilBlockedAsync("the deletion waits for the transaction that creates a run in the session");
        await transaction.CommitAsync();

        var busy = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(deletion, "the deletion", s_timeout));
        Assert.Equal(AgentPgErrorCode.SessionBusy, busy.Code);
        Assert.Contains(run.ToString(), busy.Message, StringComparison.Ordinal);
        Assert.Equal(RunState.Pending, (await client.GetRunAsync(run)).State);
    }

    [DatabaseFact]
    public async Task DeleteSession_InTheCallersTransaction_RollbackKeepsEverything_CommitDeletes_AndARunCreatedMeanwhileFindsNoSession()
    {
        await using var client = db.CreateClient();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "del_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await client.NewSessionAsync();
        var finished = await client.RunFastAsync(session, agent.Id, "cancelled before the deletion");
        await client.CancelRunAsync(finished);

        await using (var connection = await db.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await client.DeleteSessionAsync(transaction, session);
            await transaction.RollbackAsync();
        }

        Assert.Equal(session, (await client.GetSessionAsync(session)).Id);
        Assert.Equal(RunState.Cancelled, (await client.GetRunAsync(finished)).State);

        await using (var connection = await db.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await client.DeleteSessionAsync(transaction, session);
            var creation = client.RunFastAsync(session, agent.Id, "created while the deletion is not committed");
            await WaitUntilBlockedAsync("the run's creation waits for the deleting transaction");
            await transaction.CommitAsync();

            var notFound = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(creation, "the run's creation", s_timeout));
            Assert.Equal(AgentPgErrorCode.SessionNotFound, notFound.Code);
        }

        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = $1", session));
    }

    [DatabaseTheory]
    [InlineData(IsolationLevel.ReadCommitted)]
    [InlineData(IsolationLevel.RepeatableRead)]
    [InlineData(IsolationLevel.Serializable)]
    public async Task DeleteSession_InACallersTransactionOfEachIsolationLevel_ARunCommittedWhileItWaits_IsNeverDeleted(IsolationLevel level)
    {
        await using var client = db.CreateClient();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "del_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await client.NewSessionAsync();
        var childSession = await client.NewSessionAsync(session);
        await using var creating = await db.DataSource.OpenConnectionAsync();
        await using var creation = await creating.BeginTransactionAsync();
        var run = await client.RunFastAsync(creation, childSession, agent.Id, "created while the deletion waits");

        await using (var deleting = await db.DataSource.OpenConnectionAsync())
        await using (var transaction = await deleting.BeginTransactionAsync(level))
        {
            // The caller's transaction has read before (its snapshot, at REPEATABLE READ and SERIALIZABLE, predates the run).
            await using (var read = new NpgsqlCommand("SELECT 1", deleting, transaction))
            {
                await read.ExecuteScalarAsync();
            }

            var deletion = client.DeleteSessionAsync(transaction, session);
            await WaitUntilBlockedAsync("the deletion waits for the transaction that creates a run in the child session");
            await creation.CommitAsync();

            var failure = await Assert.ThrowsAnyAsync<Exception>(() => Eventually.WithinAsync(deletion, "the deletion", s_timeout));
            if (level == IsolationLevel.ReadCommitted)
            {
                var busy = Assert.IsType<AgentPgException>(failure);
                Assert.Equal(AgentPgErrorCode.SessionBusy, busy.Code);
                Assert.Contains(run.ToString(), busy.Message, StringComparison.Ordinal);
            }
            else
            {
                // The snapshot cannot see the run: the cascade meets it and PostgreSQL refuses with a serialization failure.
                var serialization = Assert.IsType<PostgresException>(failure);
                Assert.Equal(PostgresErrorCodes.SerializationFailure, serialization.SqlState);
                Assert.True(serialization.IsTransient);
            }

            await transaction.RollbackAsync();
        }

        Assert.Equal(RunState.Pending, (await client.GetRunAsync(run)).State);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_run_queue WHERE run_id = $1", run));
        Assert.Equal(2L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { session, childSession }));

        // The retry the failure asks for: a new transaction sees the run, refuses while it is active, deletes once it is not.
        await using (var deleting = await db.DataSource.OpenConnectionAsync())
        await using (var transaction = await deleting.BeginTransactionAsync(level))
        {
            var busy = await Assert.ThrowsAsync<AgentPgException>(() => client.DeleteSessionAsync(transaction, session));
            Assert.Equal(AgentPgErrorCode.SessionBusy, busy.Code);
            Assert.Contains(run.ToString(), busy.Message, StringComparison.Ordinal);
        }

        await client.CancelRunAsync(run);
        await using (var deleting = await db.DataSource.OpenConnectionAsync())
        await using (var transaction = await deleting.BeginTransactionAsync(level))
        {
            await client.DeleteSessionAsync(transaction, session);
            await transaction.CommitAsync();
        }

        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = $1", run));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { session, childSession }));
    }

    [DatabaseTheory]
    [InlineData(IsolationLevel.RepeatableRead, "REPEATABLE READ")]
    [InlineData(IsolationLevel.Serializable, "SERIALIZABLE")]
    public async Task DeleteSession_InASnapshotTransaction_ARunFinishedAfterTheSnapshot_IsRefusedSayingToRetryInANewTransaction(IsolationLevel level, string name)
    {
        await using var client = db.CreateClient();
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = "del_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await client.NewSessionAsync();
        var run = await client.RunFastAsync(session, agent.Id, "cancelled after the snapshot");

        await using var deleting = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await deleting.BeginTransactionAsync(level);
        await using (var read = new NpgsqlCommand("SELECT 1", deleting, transaction))
        {
            await read.ExecuteScalarAsync();
        }

        await client.CancelRunAsync(run);

        // Cancelling again, as the message asked before, could never help: this transaction sees the run as it was.
        var busy = await Assert.ThrowsAsync<AgentPgException>(() => client.DeleteSessionAsync(transaction, session));
        Assert.Equal(AgentPgErrorCode.SessionBusy, busy.Code);
        Assert.Contains($"Your transaction is {name}: it sees the runs as of its snapshot, so retry in a new transaction.", busy.Message, StringComparison.Ordinal);
        await transaction.RollbackAsync();

        await using var retry = await deleting.BeginTransactionAsync(level);
        await client.DeleteSessionAsync(retry, session);
        await retry.CommitAsync();
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = $1", session));
    }

    [DatabaseFact]
    public async Task DeleteSession_DbContextOverload_DeletesWithTheContextsTransaction()
    {
        await using var client = db.CreateClient();
        var session = await client.NewSessionAsync();
        await using var shop = new ShopDb(ShopDb.Options(db.DataSource), new ShopSchema(db.Schema));

        var noTransaction = await Assert.ThrowsAsync<InvalidOperationException>(() => client.DeleteSessionAsync(shop, session));
        Assert.Contains("Database.BeginTransactionAsync()", noTransaction.Message, StringComparison.Ordinal);

        await using (var tx = await shop.Database.BeginTransactionAsync())
        {
            await client.DeleteSessionAsync(shop, session);
            await tx.CommitAsync();
        }

        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = $1", session));
    }

    /// <summary>Waits until a statement on this schema waits for a lock.</summary>
    private Task WaitUntilBlockedAsync(string what)
        => Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0", db.Schema) > 0, what, s_timeout);

    private async Task<Guid[]> RunIdsAsync(Guid[] sessions)
        => await db.ScalarAsync<Guid[]>("SELECT coalesce(array_agg(id), '{}') FROM {schema}.agentpg_runs WHERE session_id = ANY ($1)", sessions);

    /// <summary>How many rows of each kind the sessions have, through their ids and their runs' ids (read before a deletion).</summary>
    private async Task<Dictionary<string, long>> CountsAsync(Guid[] sessions, Guid[] runIds)
    {
        var bySession = new Dictionary<string, string>
        {
            ["runs"] = "SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = ANY ($1)",
            ["child runs"] = "SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = ANY ($1) AND parent_run_id IS NOT NULL",
            ["queued runs"] = "SELECT count(*) FROM {schema}.agentpg_run_queue WHERE session_id = ANY ($1)",
            ["messages"] = "SELECT count(*) FROM {schema}.agentpg_messages WHERE session_id = ANY ($1)",
            ["compaction events"] = "SELECT count(*) FROM {schema}.agentpg_compaction_events WHERE session_id = ANY ($1)",
            ["archived messages"] = "SELECT count(*) FROM {schema}.agentpg_message_archive WHERE session_id = ANY ($1)",
        };
        var byRun = new Dictionary<string, string>
        {
            ["iterations"] = "SELECT count(*) FROM {schema}.agentpg_iterations WHERE run_id = ANY ($1)",
            ["tool executions"] = "SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = ANY ($1)",
            ["approvals"] = "SELECT count(*) FROM {schema}.agentpg_tool_executions WHERE run_id = ANY ($1) AND approval_decision IS NOT NULL",
            ["run events"] = "SELECT count(*) FROM {schema}.agentpg_run_events WHERE root_run_id = ANY ($1)",
            ["run event heads"] = "SELECT count(*) FROM {schema}.agentpg_run_event_heads WHERE root_run_id = ANY ($1)",
        };
        var counts = new Dictionary<string, long>();
        foreach (var (what, sql) in bySession)
        {
            counts[what] = await db.ScalarAsync<long>(sql, sessions);
        }

        foreach (var (what, sql) in byRun)
        {
            counts[what] = await db.ScalarAsync<long>(sql, runIds);
        }

        return counts;
    }

    /// <summary>docs/operations.md's retention job, as written there.</summary>
    private static async Task RetentionJobAsync(AgentPgClient agents, DateTimeOffset cutoff)
    {
        string? cursor = null;
        do
        {
            var page = await agents.ListSessionsAsync(new SessionQuery { RootOnly = true, CreatedBefore = cutoff, Limit = 100, Cursor = cursor });
            foreach (var session in page.Items)
            {
                var newest = await agents.ListRunsAsync(new RunQuery { SessionId = session.Id, Limit = 1 });
                if (newest.Items.Count > 0 && newest.Items[0].CreatedAt >= cutoff)
                {
                    continue;
                }

                try
                {
                    await agents.DeleteSessionAsync(session.Id);
                }
                catch (AgentPgException e) when (e.Code is AgentPgErrorCode.SessionBusy or AgentPgErrorCode.SessionNotFound)
                {
                }
            }

            cursor = page.NextCursor;
        }
        while (cursor is not null);
    }

    [DatabaseFact]
    public async Task RetentionRecipe_DeletesOnlyConversationsNobodyUsedSinceTheCutoff()
    {
        // The SQL the docs gave before picked sessions by updated_at, which runs never change: a conversation used yesterday
        // in a session created (or last compacted) months ago was deleted.
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = (await h.AgentAsync()).Id;
        async Task<Guid> FinishedRunAsync(Guid session)
        {
            var run = await db.Seed.RunAsync(session, agent);
            await db.Seed.FinishRunAsync(run);
            return run;
        }

        var idle = await h.Client.NewSessionAsync();
        var idleChild = await h.Client.NewSessionAsync(idle);
        var idleRun = await FinishedRunAsync(idle);
        var usedYesterday = await h.Client.NewSessionAsync();
        var oldRun = await FinishedRunAsync(usedYesterday);
        var yesterdaysRun = await FinishedRunAsync(usedYesterday);
        var busy = await h.Client.NewSessionAsync();
        var pending = await db.Seed.RunAsync(busy, agent);
        var empty = await h.Client.NewSessionAsync();
        var recent = await h.Client.NewSessionAsync();
        await db.ExecuteAsync("UPDATE {schema}.agentpg_sessions SET created_at = now() - interval '100 days', updated_at = now() - interval '100 days' WHERE id = ANY($1)",
            new[] { idle, idleChild, usedYesterday, busy, empty });
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET created_at = now() - interval '100 days' WHERE id = ANY($1)", new[] { idleRun, oldRun, pending });
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET created_at = now() - interval '1 day' WHERE id = $1", yesterdaysRun);

        await RetentionJobAsync(h.Client, DateTimeOffset.UtcNow.AddDays(-90));

        var left = await db.ScalarAsync<Guid[]>("SELECT coalesce(array_agg(id), '{}') FROM {schema}.agentpg_sessions WHERE id = ANY($1)",
            new[] { idle, idleChild, usedYesterday, busy, empty, recent });
        Assert.Equal(new[] { usedYesterday, busy, recent }.Order(), left.Order());
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = $1", idleRun));
        Assert.Equal(RunState.Pending, (await h.Client.GetRunAsync(pending)).State);
    }
}
