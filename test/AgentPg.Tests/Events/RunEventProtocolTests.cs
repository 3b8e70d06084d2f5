using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Events;

/// <summary>The database side of live events for runs nobody watches: a transaction that found a root run unwatched
/// remembers it and skips the rest of its appends, and a first watcher still sees every change of that transaction.</summary>
public sealed class RunEventProtocolTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
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

    private static async Task ExecuteAsync(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private async Task<Guid?> WatchAsync(NpgsqlConnection connection, Guid run)
    {
        await using var command = new NpgsqlCommand(Q("SELECT {schema}.agentpg_watch_run($1)"), connection);
        command.Parameters.Add(Id(run));
        return await command.ExecuteScalarAsync() as Guid?;
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
}
