using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Runs;

/// <summary>WaitForRunAsync's fallback for a lost notification is one read per poll interval for all the waits of a client,
/// not one per wait.</summary>
public sealed class WaitPollTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const int Waits = 100;

    [DatabaseFact]
    public async Task ManyWaits_OnRunsNobodyProcesses_ShareOneReadPerPollInterval_AndAFinishWithoutItsNotificationIsStillSeen()
    {
        // Nothing processes the runs, so every wait lasts until the test ends it.
        var (producer, runs) = await db.PendingRunsAsync(Waits);
        await using var producerLifetime = producer;

        using var statements = new TracedStatements(db.Schema);
        using var stop = new CancellationTokenSource();
        var waits = runs.Select(run => Task.Run(() => producer.WaitForRunAsync(run, stop.Token))).ToList();

        // Twenty shared polls (each reads the states of every waited run in one statement), or clearly more single-run reads
        // than the waits' first ones (a read per wait per interval).
        int Polls() => statements.Count("unnest($1::uuid[]) AS w(id)");
        int Reads() => statements.Count("FROM \"" + db.Schema + "\".agentpg_runs WHERE id = $1");
        await Eventually.TrueAsync(() => Polls() >= 20 || Reads() > 3 * Waits, "twenty shared polls");
        // Each wait read its run once when it started; none read it again at each interval (that would be ~2 000 reads by now).
        var reads = Reads();
        Assert.True(reads <= Waits, $"{reads} reads of single runs for {Waits} waits ({Polls()} shared polls)");
        Assert.True(Polls() >= 20, $"{Polls()} shared polls");

        // A run finished by hand with its notification withheld: the shared poll finds it, and its wait ends.
        await using (var connection = await db.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await using (var defer = new NpgsqlCommand("SET LOCAL agentpg.defer_notify = 'agentpg_run_finalized'", connection, transaction))
            {
                await defer.ExecuteNonQueryAsync();
            }

            await using (var cancel = new NpgsqlCommand($"SELECT * FROM \"{db.Schema}\".agentpg_cancel_run($1)", connection, transaction))
            {
                cancel.Parameters.Add(new NpgsqlParameter { Value = runs[0] });
                await cancel.ExecuteNonQueryAsync();
            }

            await transaction.CommitAsync();
        }

        var error = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(waits[0], "the wait of the run finished without a notification"));
        Assert.Equal(AgentPgErrorCode.RunCancelled, error.Code);
        Assert.All(waits.Skip(1), w => Assert.False(w.IsCompleted));

        await stop.CancelAsync();
        foreach (var wait in waits.Skip(1))
        {
            await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
        }

        Assert.Equal(0, producer.Engine.Waiters.Count);
    }
}
