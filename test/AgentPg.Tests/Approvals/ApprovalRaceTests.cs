using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Approvals;

/// <summary>Decisions racing what else touches a waiting request: a delete of its run or session.</summary>
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
    public async Task Decision_OfADecidedRequest_IsStillNotPending()
    {
        var (_, _, execution) = await WaitingRequestAsync();
        await using var client = db.CreateClient();
        await client.RejectToolCallAsync(execution, "not this one", "alice");

        var error = await Assert.ThrowsAsync<AgentPgException>(() => client.ApproveToolCallAsync(execution, null, "ok", "bob"));
        Assert.Equal(AgentPgErrorCode.ApprovalNotPending, error.Code);
    }
}
