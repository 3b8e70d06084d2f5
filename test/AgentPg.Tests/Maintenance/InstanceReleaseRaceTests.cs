using AgentPg.Maintenance;
using AgentPg.Tests.Infrastructure;
using static AgentPg.Tests.Infrastructure.ConnectionSql;

namespace AgentPg.Tests.Maintenance;

/// <summary>The release of a stale instance's work (agentpg_release_instance_work) against a claim by that instance committed
/// while it runs: whatever it releases, it releases whole (the run back to pending and its started iteration abandoned).</summary>
/// <remarks>A class of its own: the cleanup below must find no stale instance but the one it is held on. In the
/// <c>TelemetryTests</c> collection, which runs alone: one test counts the process-wide meter's failed runs.</remarks>
[Collection(nameof(AgentPg.Tests.Diagnostics.TelemetryTests))]
public sealed class InstanceReleaseRaceTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task Cleanup_AClaimCommittedWhileTheInstanceIsReleased_IsReleasedWithItsIterationAbandoned()
    {
        // A stale instance (only slow, not dead) claims a run, its iteration started, while the leader's cleanup releases it.
        // The release marked the held runs' iterations abandoned and then released the held runs, each statement reading the
        // instance's claims again: a claim committed between the two had its run released to pending, the rescue counted,
        // with its iteration neither completed nor abandoned (in progress forever; the repeat did not know it was one).
        // RunLimitsTests.MaxIterations_RescuedRun_… failed in CI this way: [null, null, "iteration_limit"].
        var (run, iteration) = await CleanupWithAClaimCommittedWhileItIsHeldAsync("slow", rescueAttempts: 0, maxAttempts: 3);

        // The claim was released with the instance (by the delete's own release), its iteration abandoned.
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = 'slow'"));
        Assert.Equal("pending, 1 rescue, held by nobody", await db.ScalarAsync<string>(
            "SELECT state::text || ', ' || rescue_attempts || ' rescue, held by ' || coalesce(claimed_by_instance_id, 'nobody') " +
            "FROM {schema}.agentpg_runs WHERE id = $1", run));
        Assert.Equal("abandoned, completed", await db.ScalarAsync<string>(
            "SELECT coalesce(error_type, 'no error type') || ', ' || CASE WHEN completed_at IS NULL THEN 'in progress' ELSE 'completed' END " +
            "FROM {schema}.agentpg_iterations WHERE id = $1", iteration));
    }

    [DatabaseFact]
    public async Task Cleanup_AClaimCommittedWhileTheInstanceIsReleased_CountsAgainstTheRescueLimit()
    {
        // The claim committed after the cleanup's release locked the instance's runs is released by the instance delete's
        // trigger, which released with no limit: a run rescued RunRescue.MaxAttempts times already went back to pending (and
        // ran once more) where the cleanup's own release would have failed it with rescue_failed.
        var (run, _) = await CleanupWithAClaimCommittedWhileItIsHeldAsync("slow-at-the-limit", rescueAttempts: 2, maxAttempts: 2);

        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = 'slow-at-the-limit'"));
        Assert.Equal("failed, rescue_failed, 3 rescues, held by nobody", await db.ScalarAsync<string>(
            "SELECT state::text || ', ' || coalesce(error_type, 'no error type') || ', ' || rescue_attempts || ' rescues, held by ' " +
            "|| coalesce(claimed_by_instance_id, 'nobody') FROM {schema}.agentpg_runs WHERE id = $1", run));
    }

    [DatabaseFact]
    public async Task Cleanup_AClaimCommittedWhileTheInstanceIsReleased_ItsFailedRunIsCountedByTheLeader()
    {
        // The run the instance delete's trigger fails (rescue_failed, inside the cleanup's DELETE) was not in what the cleanup
        // returned: the leader's agentpg.runs count of failed runs missed it.
        using var metrics = new Measurements();

        var (run, _) = await CleanupWithAClaimCommittedWhileItIsHeldAsync("slow-and-counted", rescueAttempts: 2, maxAttempts: 2);

        Assert.Equal("failed, rescue_failed", await db.ScalarAsync<string>(
            "SELECT state::text || ', ' || coalesce(error_type, 'no error type') FROM {schema}.agentpg_runs WHERE id = $1", run));
        var failed = Assert.Single(metrics.Of("agentpg.runs"));
        Assert.Equal((1d, "failed", "streaming"), (failed.Value, failed.Tags["agentpg.run.outcome"], failed.Tags["agentpg.run.mode"]));
    }

    /// <summary>Runs the leader's cleanup of the dead instance <paramref name="instance"/>, held between its iteration update
    /// and its release of the runs (a statement trigger on the iterations waits for an advisory lock the test holds) while
    /// the instance's claim of a run, already rescued <paramref name="rescueAttempts"/> times, commits.</summary>
    private async Task<(Guid Run, Guid Iteration)> CleanupWithAClaimCommittedWhileItIsHeldAsync(string instance, int rescueAttempts, int maxAttempts)
    {
        var engine = TestEngine.Create(db, "cleaner", o =>
        {
            o.InstanceTtl = TimeSpan.FromSeconds(30);
            o.RunRescue.MaxAttempts = maxAttempts;
        });
        await db.Seed.LeaseAsync("cleaner");
        await db.Seed.DeadInstanceAsync(instance);
        var run = await db.Seed.RunAsync();
        var iteration = await db.Seed.RunningIterationAsync(run);
        var gate = Random.Shared.Next(1, int.MaxValue);
        await using (await db.TriggerAsync("test_hold_after_iteration_update", "AFTER UPDATE", "agentpg_iterations",
                         $"PERFORM pg_advisory_xact_lock_shared({gate}); RETURN NULL;", perStatement: true))
        {
            await using var holder = await db.DataSource.OpenConnectionAsync();
            await ExecuteAsync(holder, $"SELECT pg_advisory_lock({gate})");

            var cleanup = new InstanceCleanup(engine).RunAsync(CancellationToken.None);
            await Eventually.TrueAsync(
                async () => cleanup.IsCompleted || await db.ScalarAsync<long>(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND classid = 0 AND objid = $1::bigint::oid AND objsubid = 1",
                    (long)gate) > 0,
                "the cleanup to wait after its iteration update");
            Assert.False(cleanup.IsCompleted, "The cleanup ended before it was held: the interleaving under test did not happen.");
            await db.Seed.ClaimRunAsync(run, instance, TimeSpan.FromHours(1), rescueAttempts: rescueAttempts);
            await ExecuteAsync(holder, $"SELECT pg_advisory_unlock({gate})");

            await Eventually.WithinAsync(cleanup, "the cleanup");
        }

        return (run, iteration);
    }
}
