using AgentPg.Maintenance;
using AgentPg.Runs;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Maintenance;

/// <summary>A heartbeat's report of the work its instance holds vouches only for claims its read of that work could see, so
/// the leader's stuck-work sweep never releases a run or tool execution the instance is working on.</summary>
/// <remarks>Times are shifted back (the registration an hour, the claim half an hour) so that the sweep's bound
/// (<see cref="AgentPgOptions.InstanceTtl"/>) has long passed without waiting for it.</remarks>
public sealed class HeldWorkReportTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task ReportWrittenLongAfterItsRead_DoesNotReleaseARunClaimedBetweenTheTwo()
    {
        // The heartbeat reads what the instance holds (nothing), then the process stalls (a starved thread pool, a wait for a
        // pooled connection) while its worker claims a run, and the report is written more than the bound later. Dated at its
        // write, the report said that the run, claimed before it and not listed, was abandoned: the leader (here the instance
        // itself) released the run its worker was streaming, and the model was called again (WatchRunCrashTests under load:
        // iterations 1, 2, 3).
        const string id = "held-report-stale";
        var engine = TestEngine.Create(db, id, o => o.InstanceTtl = TimeSpan.FromSeconds(2));
        await db.Seed.InstanceAsync(id, TimeSpan.FromHours(1));
        await db.Seed.LeaseAsync(id);
        var read = engine.Held.Snapshot();
        var run = await db.Seed.RunAsync();
        await db.Seed.ClaimRunAsync(run, id, TimeSpan.FromMinutes(30));
        engine.Held.Add(run);

        await HeartbeatAsync(engine, read);
        await new StuckWorkSweeper(engine).RunAsync(CancellationToken.None);

        Assert.Equal((id, 0), await HolderAsync(run));

        // The next report lists the run: kept.
        await HeartbeatAsync(engine, engine.Held.Snapshot());
        await new StuckWorkSweeper(engine).RunAsync(CancellationToken.None);
        Assert.Equal((id, 0), await HolderAsync(run));

        // The worker let it go without an outcome: the report after that releases it (what the sweep is for).
        engine.Held.Remove(run);
        await HeartbeatAsync(engine, engine.Held.Snapshot());
        await new StuckWorkSweeper(engine).RunAsync(CancellationToken.None);
        Assert.Equal((null, 1), await HolderAsync(run));
    }

    [DatabaseFact]
    public async Task ReportsReadWhileAClaimIsInFlight_DoNotReleaseWhatItClaimed()
    {
        // A claim that spans heartbeats (a slow statement): they read the held work before the claim's items are added, so
        // they can vouch for nothing claimed after the last report read without a claim in flight.
        const string id = "held-report-claiming";
        var engine = TestEngine.Create(db, id, o => o.InstanceTtl = TimeSpan.FromSeconds(2));
        await db.Seed.InstanceAsync(id, TimeSpan.FromHours(1));
        await db.Seed.LeaseAsync(id);
        await HeartbeatAsync(engine, engine.Held.Snapshot());
        await db.ExecuteAsync("UPDATE {schema}.agentpg_instances SET last_heartbeat_at = now() - interval '45 minutes' WHERE id = $1", id);

        engine.Held.BeginClaim();
        var run = await db.Seed.RunAsync();
        await db.Seed.ClaimRunAsync(run, id, TimeSpan.FromMinutes(30));
        await HeartbeatAsync(engine, engine.Held.Snapshot());
        await HeartbeatAsync(engine, engine.Held.Snapshot());
        await new StuckWorkSweeper(engine).RunAsync(CancellationToken.None);

        Assert.Equal((id, 0), await HolderAsync(run));

        engine.Held.Add(run);
        engine.Held.EndClaim();
        await HeartbeatAsync(engine, engine.Held.Snapshot());
        await new StuckWorkSweeper(engine).RunAsync(CancellationToken.None);
        Assert.Equal((id, 0), await HolderAsync(run));
    }

    private static async Task HeartbeatAsync(Engine engine, HeldSnapshot held)
    {
        await using var command = engine.Sql.Instances.HeartbeatCommand(engine.DataSource, engine.InstanceId, held);
        Assert.Equal(1, await command.ExecuteNonQueryAsync());
    }

    private async Task<(string? Holder, int RescueAttempts)> HolderAsync(Guid run)
    {
        var holder = await db.ScalarAsync<object>("SELECT claimed_by_instance_id FROM {schema}.agentpg_runs WHERE id = $1", run);
        var attempts = await db.ScalarAsync<int>("SELECT rescue_attempts FROM {schema}.agentpg_runs WHERE id = $1", run);
        return (holder as string, attempts);
    }
}
