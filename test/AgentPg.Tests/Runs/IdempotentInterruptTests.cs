using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>Review D3: an idempotent repeat with ConcurrencyPolicy.Interrupt is a no-op, never a cancel.</summary>
public sealed class IdempotentInterruptTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task Interrupt_RepeatedWithTheSameKey_ReturnsTheOriginalRunStillRunning()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var held = new HeldRequest(h.Claude, "p", _ => FakeReply.Text("done"));
        var options = new RunOptions { IdempotencyKey = "k", ConcurrencyPolicy = ConcurrencyPolicy.Interrupt };

        var first = await h.Client.RunFastAsync(session, agent.Id, "p", options);
        await Eventually.WithinAsync(held.Arrived, "the first run's request");
        var again = await h.Client.RunFastAsync(session, agent.Id, "p", options);

        Assert.Equal(first, again);
        Assert.Equal(RunState.Streaming, (await h.Client.GetRunAsync(first)).State);
        held.Release();
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(first), "the original run");
        Assert.Equal("done", response.Text);
    }

    [DatabaseFact]
    public async Task Interrupt_RepeatedWithTheKeyOfAFinishedRun_LeavesTheActiveRunAlone()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var held = new HeldRequest(h.Claude, "second", r => FakeReply.Text("answer to " + r.LastUserText));
        var options = new RunOptions { IdempotencyKey = "finished", ConcurrencyPolicy = ConcurrencyPolicy.Interrupt };

        var finished = await h.Client.RunFastAsync(session, agent.Id, "first", options);
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(finished), "the first run");
        var active = await h.Client.RunFastAsync(session, agent.Id, "second");
        await Eventually.WithinAsync(held.Arrived, "the active run's request");

        var replay = await h.Client.RunFastAsync(session, agent.Id, "first", options);

        Assert.Equal(finished, replay);
        Assert.Equal(RunState.Streaming, (await h.Client.GetRunAsync(active)).State);
        held.Release();
        Assert.Equal("answer to second", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(active), "the active run")).Text);
    }

    [DatabaseFact]
    public async Task Reject_WhileAQueueCreatorIsUncommitted_WaitsForItAndRejects()
    {
        // Smaller finding of the review: Queue creators did not lock the session, so a Reject check could pass next to an
        // uncommitted Queue insert. Now every creator locks the session: Reject waits for the Queue creator's commit.
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await h.Client.RunFastAsync(transaction, session, agent.Id, "queued");

        var reject = h.Client.RunFastAsync(session, agent.Id, "rejected", new RunOptions { ConcurrencyPolicy = ConcurrencyPolicy.Reject });
        await Eventually.TrueAsync(
            async () => reject.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                $"%{db.Schema}%agentpg_sessions%") > 0,
            "the rejecting creator finished or waits for the session lock");
        Assert.False(reject.IsCompleted, "the Reject creator did not wait for the uncommitted Queue creator");
        await transaction.CommitAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(reject, "the rejecting creator"));
        Assert.Equal(AgentPgErrorCode.SessionBusy, ex.Code);
    }
}
