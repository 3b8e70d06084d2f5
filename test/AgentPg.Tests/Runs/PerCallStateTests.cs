using AgentPg.Runs;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>Review D5 and D6: waiting and callbacks leave no per-call entry behind.</summary>
public sealed class PerCallStateTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task RunFastSyncAsync_ManyCalls_LeaveNoWaiterBehind()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond((_, _) => Task.FromResult<FakeReply?>(FakeReply.Text("ok")));
        var sessions = new List<Guid>();
        for (var i = 0; i < 8; i++)
        {
            sessions.Add(await h.Client.NewSessionAsync());
        }

        // 8 sessions in parallel, 200 runs in all.
        await Eventually.WithinAsync(Task.WhenAll(sessions.Select(async session =>
        {
            for (var i = 0; i < 25; i++)
            {
                await h.Client.RunFastSyncAsync(session, agent.Id, "hello " + i);
            }
        })), "200 synchronous runs", TimeSpan.FromMinutes(2));

        Assert.Equal(0, h.Client.Engine.Waiters.Count);
    }

    [DatabaseFact]
    public async Task WaitForRunAsync_UnknownRunsAndGivenUpWaits_LeaveNoWaiterBehind()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        for (var i = 0; i < 2_000; i++)
        {
            var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(Guid.NewGuid()));
            Assert.Equal(AgentPgErrorCode.RunNotFound, ex.Code);
        }

        // A run nobody processes: each wait is given up by its caller.
        var agent = await h.AgentAsync();
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "never answered");
        for (var i = 0; i < 200; i++)
        {
            using var cts = new CancellationTokenSource();
            var wait = h.Client.WaitForRunAsync(run, cts.Token);
            await cts.CancelAsync();
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
        }

        Assert.Equal(0, h.Client.Engine.Waiters.Count);
    }

    [DatabaseFact]
    public async Task Callbacks_OfRolledBackRuns_AreSwept()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var options = new RunOptions { OnToolStart = _ => { } };
        var largest = 0;
        for (var i = 0; i < 1_000; i++)
        {
            await using var connection = await db.DataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            await h.Client.RunFastAsync(transaction, session, agent.Id, "rolled back " + i, options);
            await transaction.RollbackAsync();
            largest = Math.Max(largest, h.Client.Engine.Callbacks.Count);
        }

        // Sweeps run in the background as the table doubles: it never holds much more than twice the threshold.
        Assert.True(largest <= 3 * RunCallbacks.SweepThreshold, $"the callback table grew to {largest} entries for 1000 rolled-back runs");
        await h.Client.Engine.Callbacks.SweepAsync(CancellationToken.None);
        await h.Client.Engine.Callbacks.SweepAsync(CancellationToken.None);
        Assert.Equal(0, h.Client.Engine.Callbacks.Count);
    }

    [DatabaseFact]
    public async Task Callbacks_OfAnOpenTransactionAndOfActiveRuns_AreKept_AndFinishedRunsGo()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var options = new RunOptions { OnToolStart = _ => { } };
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await h.Client.RunFastAsync(transaction, await h.Client.NewSessionAsync(), agent.Id, "uncommitted", options);
        var active = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "active", options);
        var finished = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "finished", options);

        // The producer never listens: it does not hear that this run finished.
        await h.Client.CancelRunAsync(finished);
        await h.Client.Engine.Callbacks.SweepAsync(CancellationToken.None);
        await h.Client.Engine.Callbacks.SweepAsync(CancellationToken.None);

        Assert.Equal(2, h.Client.Engine.Callbacks.Count);
        Assert.True(h.Client.Engine.Callbacks.Has(active));
        Assert.False(h.Client.Engine.Callbacks.Has(finished));
        await transaction.CommitAsync();
    }

    [DatabaseFact]
    public async Task TenThousandWaitsAndTwoThousandRolledBackCallbacks_LeaveTheTablesEmpty()
    {
        // D5/D6 at scale: the per-call tables stay bounded however many calls a long-lived client serves.
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("done"));
        var session = await h.Client.NewSessionAsync();
        var finished = (await h.Client.RunFastSyncAsync(session, agent.Id, "finish")).RunId;

        // 10 000 waits, 8 at a time: on a finished run (the normal end of every RunFastSyncAsync) and on unknown ids.
        await Eventually.WithinAsync(Task.WhenAll(Enumerable.Range(0, 8).Select(async worker =>
        {
            for (var i = 0; i < 1_250; i++)
            {
                if (i % 2 == 0)
                {
                    Assert.Equal("done", (await h.Client.WaitForRunAsync(finished)).Text);
                }
                else
                {
                    await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(Guid.NewGuid()));
                }
            }
        })), "10 000 waits", TimeSpan.FromMinutes(3));
        Assert.Equal(0, h.Client.Engine.Waiters.Count);

        // 2 000 runs with callbacks, created in 20 transactions that all roll back.
        var options = new RunOptions { OnToolStart = _ => { }, OnToolComplete = _ => { } };
        var largest = 0;
        for (var t = 0; t < 20; t++)
        {
            await using var connection = await db.DataSource.OpenConnectionAsync();
            await using var transaction = await connection.BeginTransactionAsync();
            var rolledBackSession = await h.Client.NewSessionAsync(transaction);
            for (var i = 0; i < 100; i++)
            {
                await h.Client.RunFastAsync(transaction, rolledBackSession, agent.Id, "rolled back", options);
            }

            await transaction.RollbackAsync();
            largest = Math.Max(largest, h.Client.Engine.Callbacks.Count);
        }

        // Background sweeps keep it bounded (a rolled-back run goes after two sweeps that miss it); a leak would hold all 2000.
        Assert.True(largest < 2_000, $"the callback table grew to {largest} entries for 2000 rolled-back runs");
        await h.Client.Engine.Callbacks.SweepAsync(CancellationToken.None);
        await h.Client.Engine.Callbacks.SweepAsync(CancellationToken.None);
        Assert.Equal(0, h.Client.Engine.Callbacks.Count);
    }
}
