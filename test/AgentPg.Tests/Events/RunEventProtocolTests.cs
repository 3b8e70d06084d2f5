using AgentPg.Storage;
using AgentPg.Tests.Infrastructure;
using Npgsql;
using static AgentPg.Tests.Infrastructure.ConnectionSql;

namespace AgentPg.Tests.Events;

/// <summary>The database side of live events for runs nobody watches: a transaction that found a root run unwatched
/// (under the root's advisory lock, or holding the root run's row with its watch marker unset) remembers it and skips the
/// rest of its appends, and a first watcher still sees every change of that transaction.</summary>
public sealed class RunEventProtocolTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string Worker = "protocol-worker";

    private readonly Sql _sql = new(new SchemaName(db.Schema));

    private string Q(string sql) => sql.Replace("{schema}", $"\"{db.Schema}\"", StringComparison.Ordinal);

    private static NpgsqlParameter Id(Guid value) => new() { Value = value };

    private async Task<Guid> InsertUserMessageAsync(NpgsqlConnection connection, Guid session, Guid run)
    {
        await using var command = new NpgsqlCommand(
            Q("INSERT INTO {schema}.agentpg_messages (session_id, run_id, role) VALUES ($1, $2, 'user') RETURNING id"), connection);
        command.Parameters.Add(Id(session));
        command.Parameters.Add(Id(run));
        return (Guid)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>What a first watcher does (RunEventSql.WatchAsync), on a connection of the test's: marks the root run's row,
    /// then registers the watch, each in a transaction of its own.</summary>
    private async Task<Guid?> WatchAsync(NpgsqlConnection connection, Guid run)
    {
        await using (var mark = new NpgsqlCommand(_sql.RunEvents.MarkWatched, connection))
        {
            mark.Parameters.Add(Id(run));
            await mark.ExecuteScalarAsync();
        }

        await using var command = new NpgsqlCommand(_sql.RunEvents.Watch, connection);
        command.Parameters.Add(Id(run));
        return await command.ExecuteScalarAsync() as Guid?;
    }

    private static async Task<string> RememberedAsync(NpgsqlConnection connection)
    {
        await using var command = new NpgsqlCommand("SELECT coalesce(current_setting('agentpg.unwatched_roots', true), '')", connection);
        return (string)(await command.ExecuteScalarAsync())!;
    }

    private async Task<long> AdvisoryLocksHeldAsync(int backendPid)
    {
        await using var command = db.DataSource.CreateCommand("SELECT count(*) FROM pg_locks WHERE pid = $1 AND locktype = 'advisory'");
        command.Parameters.Add(new NpgsqlParameter { Value = backendPid });
        return (long)(await command.ExecuteScalarAsync())!;
    }

    /// <summary>The workers' fence (RunSql.Fence) of <paramref name="run"/>'s claim by <see cref="Worker"/>.</summary>
    private async Task FenceAsync(NpgsqlConnection connection, Guid run)
    {
        await using var epoch = new NpgsqlCommand(Q("SELECT claim_epoch FROM {schema}.agentpg_runs WHERE id = $1"), connection);
        epoch.Parameters.Add(Id(run));
        var claimEpoch = (long)(await epoch.ExecuteScalarAsync())!;
        await using var fence = new NpgsqlCommand(_sql.Runs.Fence, connection);
        fence.Parameters.Add(Id(run));
        fence.Parameters.Add(new NpgsqlParameter { Value = Worker });
        fence.Parameters.Add(new NpgsqlParameter { Value = claimEpoch });
        fence.Parameters.Add(new NpgsqlParameter { Value = DBNull.Value, NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Uuid });
        await using var reader = await fence.ExecuteReaderAsync();
        Assert.False(await reader.ReadAsync(), "the fence returns no row while the claim is held");
    }

    private async Task<List<(long Sequence, string Kind, Guid? Ref)>> EventsAsync(Guid root)
    {
        await using var command = db.DataSource.CreateCommand(
            Q("SELECT sequence, kind, ref_id FROM {schema}.agentpg_run_events WHERE root_run_id = $1 ORDER BY sequence"));
        command.Parameters.Add(Id(root));
        await using var reader = await command.ExecuteReaderAsync();
        var events = new List<(long, string, Guid?)>();
        while (await reader.ReadAsync())
        {
            events.Add((reader.GetInt64(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetGuid(2)));
        }

        return events;
    }

    private async Task<bool> WaitsForALockAsync(int backendPid)
    {
        await using var command = db.DataSource.CreateCommand("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = $1 AND NOT granted)");
        command.Parameters.Add(new NpgsqlParameter { Value = backendPid });
        return (bool)(await command.ExecuteScalarAsync())!;
    }

    [DatabaseFact]
    public async Task UnwatchedRoot_IsRememberedForTheTransaction_AndAFirstWatcherWaitsForItsCommitAndBackFillsEverything()
    {
        var session = await db.Seed.SessionAsync();
        var run = await db.Seed.RunAsync(session);
        await using var writer = await db.DataSource.OpenConnectionAsync();
        await using var watcher = await db.DataSource.OpenConnectionAsync();

        await using (var tx = await writer.BeginTransactionAsync())
        {
            var first = await InsertUserMessageAsync(writer, session, run);
            await using (var remembered = new NpgsqlCommand("SELECT current_setting('agentpg.unwatched_roots', true)", writer))
            {
                Assert.Contains(run.ToString(), (string)(await remembered.ExecuteScalarAsync())!, StringComparison.Ordinal);
            }

            // The first watcher needs the root's lock exclusively: it waits for this transaction.
            var watching = WatchAsync(watcher, run);
            await Eventually.TrueAsync(() => WaitsForALockAsync(watcher.ProcessID), "the first watcher waits for the writer's transaction");

            // Appends this transaction now skips (no lock, no probe) must still reach the watcher, through its back-fill.
            var second = await InsertUserMessageAsync(writer, session, run);
            await ExecuteAsync(writer, Q($"UPDATE {{schema}}.agentpg_runs SET state = 'streaming' WHERE id = '{run}'"));
            Assert.False(watching.IsCompleted, "the watcher must not get past the lock before the writer commits");
            await tx.CommitAsync();

            Assert.Equal(run, await Eventually.WithinAsync(watching, "the first watcher"));
            var backFilled = await EventsAsync(run);
            Assert.Contains(backFilled, e => e.Kind == "message" && e.Ref == first);
            Assert.Contains(backFilled, e => e.Kind == "message" && e.Ref == second);
            Assert.Contains(backFilled, e => e.Kind == "state");
        }

        // The memory was the transaction's: on the same connection, the next transaction's change is appended live.
        var before = await EventsAsync(run);
        var third = await InsertUserMessageAsync(writer, session, run);
        var after = await EventsAsync(run);
        Assert.Equal(before.Count + 1, after.Count);
        Assert.Equal(("message", (Guid?)third), (after[^1].Kind, after[^1].Ref));
        Assert.Equal(before[^1].Sequence + 1, after[^1].Sequence);
    }

    [DatabaseFact]
    public async Task UnwatchedRoot_RememberedInARolledBackSavepoint_IsForgottenWithTheLock()
    {
        var session = await db.Seed.SessionAsync();
        var run = await db.Seed.RunAsync(session);
        await using var writer = await db.DataSource.OpenConnectionAsync();
        await using var watcher = await db.DataSource.OpenConnectionAsync();

        await using var tx = await writer.BeginTransactionAsync();
        await ExecuteAsync(writer, "SAVEPOINT s");
        await InsertUserMessageAsync(writer, session, run);
        await ExecuteAsync(writer, "ROLLBACK TO SAVEPOINT s");

        // The savepoint's rollback released the shared lock: a first watcher gets through while the transaction is open.
        Assert.Equal(run, await Eventually.WithinAsync(WatchAsync(watcher, run), "a first watcher while the writer's transaction is open"));

        // ... and took the memory with it: this change is appended, not skipped.
        var message = await InsertUserMessageAsync(writer, session, run);
        await tx.CommitAsync();
        Assert.Contains(await EventsAsync(run), e => e.Kind == "message" && e.Ref == message);
    }

    [DatabaseFact]
    public async Task UnwatchedRoots_ManyInOneTransaction_StayCorrectPastTheMemoryBound()
    {
        // A transaction touching more roots than the remembered list holds (a rescue, a bulk cancel) keeps probing, and a
        // root watched before it still gets its events.
        var session = await db.Seed.SessionAsync();
        var watched = await db.Seed.RunAsync(session);
        await using var writer = await db.DataSource.OpenConnectionAsync();
        Assert.Equal(watched, await WatchAsync(writer, watched));
        var others = new List<(Guid Session, Guid Run)>();
        for (var i = 0; i < 80; i++)
        {
            var s = await db.Seed.SessionAsync();
            others.Add((s, await db.Seed.RunAsync(s)));
        }

        var before = (await EventsAsync(watched)).Count;
        await using (var tx = await writer.BeginTransactionAsync())
        {
            foreach (var (s, r) in others)
            {
                await InsertUserMessageAsync(writer, s, r);
            }

            await InsertUserMessageAsync(writer, session, watched);
            await InsertUserMessageAsync(writer, session, watched);
            await tx.CommitAsync();
        }

        Assert.Equal(before + 2, (await EventsAsync(watched)).Count);
        foreach (var (_, r) in others)
        {
            Assert.Empty(await EventsAsync(r));
        }
    }

    [DatabaseFact]
    public async Task UnwatchedRootRow_LockedByTheFence_SkipsWithoutTheAdvisoryLock_AndAFirstWatcherWaitsForTheCommit()
    {
        var session = await db.Seed.SessionAsync();
        var run = await db.Seed.RunAsync(session);
        await db.Seed.ClaimRunAsync(run, Worker, TimeSpan.Zero);
        await using var writer = await db.DataSource.OpenConnectionAsync();
        await using var watcher = await db.DataSource.OpenConnectionAsync();

        Guid first;
        await using (var tx = await writer.BeginTransactionAsync())
        {
            // The fence holds the root run's row with its marker unset: the root is remembered, no lock taken, no probe.
            await FenceAsync(writer, run);
            Assert.Contains(run.ToString(), await RememberedAsync(writer), StringComparison.Ordinal);
            first = await InsertUserMessageAsync(writer, session, run);
            Assert.Equal(0, await AdvisoryLocksHeldAsync(writer.ProcessID));

            // Marking the row waits for this transaction.
            var watching = WatchAsync(watcher, run);
            await Eventually.TrueAsync(() => WaitsForALockAsync(watcher.ProcessID), "the first watcher waits for the fenced transaction");
            await ExecuteAsync(writer, Q($"UPDATE {{schema}}.agentpg_runs SET state = 'pending_tools' WHERE id = '{run}'"));
            Assert.Equal(0, await AdvisoryLocksHeldAsync(writer.ProcessID));
            Assert.False(watching.IsCompleted, "the watcher must not get past the row lock before the writer commits");
            await tx.CommitAsync();

            Assert.Equal(run, await Eventually.WithinAsync(watching, "the first watcher"));
        }

        var backFilled = await EventsAsync(run);
        Assert.Contains(backFilled, e => e.Kind == "message" && e.Ref == first);
        Assert.Contains(backFilled, e => e.Kind == "state");

        // Watched now: the next fenced transaction reads the marker set, remembers nothing, and appends live.
        await using (var tx = await writer.BeginTransactionAsync())
        {
            await FenceAsync(writer, run);
            Assert.DoesNotContain(run.ToString(), await RememberedAsync(writer), StringComparison.Ordinal);
            var second = await InsertUserMessageAsync(writer, session, run);
            await ExecuteAsync(writer, Q($"UPDATE {{schema}}.agentpg_runs SET state = 'streaming' WHERE id = '{run}'"));
            await tx.CommitAsync();

            var after = await EventsAsync(run);
            Assert.Equal(
                [("message", (Guid?)second), ("state", null)],
                after.Skip(backFilled.Count).Select(e => (e.Kind, e.Ref)).ToList());
        }
    }

    [DatabaseFact]
    public async Task UnwatchedRootRows_Claimed_SkipThePromptAndIteration_AndAFirstWatcherBackFillsThem()
    {
        var session = await db.Seed.SessionAsync();
        // A batch-mode run: the only one of this class, so the claim takes it alone (the other tests leave pending streaming runs).
        var run = await db.Seed.RunAsync(session, await db.Seed.AgentAsync(tools: []), mode: "batch");
        await using var writer = await db.DataSource.OpenConnectionAsync();
        await using var watcher = await db.DataSource.OpenConnectionAsync();

        await using (var tx = await writer.BeginTransactionAsync())
        {
            await using (var claim = new NpgsqlCommand(_sql.Runs.Claim, writer))
            {
                claim.Parameters.Add(new NpgsqlParameter { Value = Worker });
                claim.Parameters.Add(new NpgsqlParameter { Value = 5 });
                claim.Parameters.Add(new NpgsqlParameter { Value = "batch" });
                await using var reader = await claim.ExecuteReaderAsync();
                Assert.True(await reader.ReadAsync(), "the pending run is claimed");
            }

            Assert.Contains(run.ToString(), await RememberedAsync(writer), StringComparison.Ordinal);
            Assert.Equal(0, await AdvisoryLocksHeldAsync(writer.ProcessID));

            var watching = WatchAsync(watcher, run);
            await Eventually.TrueAsync(() => WaitsForALockAsync(watcher.ProcessID), "the first watcher waits for the claim");
            Assert.False(watching.IsCompleted, "the watcher must not get past the row lock before the claim commits");
            await tx.CommitAsync();
            Assert.Equal(run, await Eventually.WithinAsync(watching, "the first watcher"));
        }

        var kinds = (await EventsAsync(run)).Select(e => e.Kind).ToList();
        Assert.Contains("iteration", kinds);
        Assert.Contains("message", kinds);
        Assert.Equal(2, kinds.Count(k => k == "state"));
    }

    [DatabaseFact]
    public async Task FirstWatcher_AgainstAWriterHoldingTheAdvisoryLockThenUpdatingTheRunRow_DoesNotDeadlock()
    {
        // A tool's completion appends under the root's shared advisory lock and then the tools-complete trigger updates the
        // run's row. The watcher marks the row in a transaction of its own before it waits for the advisory lock, so the
        // writer's row update never waits for the watcher.
        var session = await db.Seed.SessionAsync();
        var run = await db.Seed.RunAsync(session);
        await db.Seed.ClaimRunAsync(run, Worker, TimeSpan.Zero, state: "pending_tools");
        await using var writer = await db.DataSource.OpenConnectionAsync();
        await using var watcher = await db.DataSource.OpenConnectionAsync();

        await using var tx = await writer.BeginTransactionAsync();
        var message = await InsertUserMessageAsync(writer, session, run);
        Assert.Equal(1, await AdvisoryLocksHeldAsync(writer.ProcessID));

        var watching = WatchAsync(watcher, run);
        await Eventually.TrueAsync(() => WaitsForALockAsync(watcher.ProcessID), "the first watcher waits for the advisory lock");
        await Eventually.WithinAsync(
            ExecuteAsync(writer, Q($"UPDATE {{schema}}.agentpg_runs SET state = 'pending' WHERE id = '{run}'")),
            "the writer's run update while a first watcher waits (a deadlock would make PostgreSQL abort one of them)");
        await tx.CommitAsync();

        Assert.Equal(run, await Eventually.WithinAsync(watching, "the first watcher"));
        var events = await EventsAsync(run);
        Assert.Contains(events, e => e.Kind == "message" && e.Ref == message);
        Assert.Contains(events, e => e.Kind == "state");
    }

    [DatabaseFact]
    public async Task WatchRun_WithoutTheMarkFirst_IsRefused()
    {
        var run = await db.Seed.RunAsync();
        await using var command = db.DataSource.CreateCommand(_sql.RunEvents.Watch);
        command.Parameters.Add(Id(run));
        var error = await Assert.ThrowsAsync<PostgresException>(() => command.ExecuteScalarAsync());
        Assert.Contains("agentpg_mark_run_watched", error.MessageText, StringComparison.Ordinal);
        Assert.Empty(await EventsAsync(run));
    }

    [DatabaseFact]
    public async Task MarkingAPendingRootRun_AnnouncesItClaimableAgain()
    {
        // Marking holds the run row for a moment; a claim meeting that lock skips the run (SKIP LOCKED), so the mark
        // announces the run again on the channel that wakes claimers.
        var run = await db.Seed.RunAsync();
        await using var listener = await db.DataSource.OpenConnectionAsync();
        string name;
        await using (var channel = new NpgsqlCommand(Q("SELECT {schema}.agentpg_channel('agentpg_run_state')"), listener))
        {
            name = (string)(await channel.ExecuteScalarAsync())!;
            await ExecuteAsync(listener, $"LISTEN \"{name}\"");
        }

        var payloads = new List<string>();
        listener.Notification += (_, e) => payloads.Add(e.Payload);
        await using var watcher = await db.DataSource.OpenConnectionAsync();
        Assert.Equal(run, await WatchAsync(watcher, run));

        await Eventually.TrueAsync(async () =>
        {
            await listener.WaitAsync(TimeSpan.FromMilliseconds(100));
            return payloads.Any(p => p.Contains(run.ToString(), StringComparison.Ordinal) && p.Contains("\"pending\"", StringComparison.Ordinal));
        }, "the marked pending run announced on agentpg_run_state");

        // A second watch changes nothing and announces nothing: a notification sent after it arrives alone.
        payloads.Clear();
        Assert.Equal(run, await WatchAsync(watcher, run));
        await ExecuteAsync(watcher, $"NOTIFY \"{name}\", 'after the second watch'");
        await Eventually.TrueAsync(async () =>
        {
            await listener.WaitAsync(TimeSpan.FromMilliseconds(100));
            return payloads.Count > 0;
        }, "the notification sent after the second watch");
        Assert.Equal(["after the second watch"], payloads);
    }
}
