using AgentPg.Maintenance;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Maintenance;

public sealed class RunRescuerTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private Task<string> StateAsync(Guid run) => db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_runs WHERE id = $1", run);

    [DatabaseFact]
    public async Task RunAsync_WhileLeading_ReleasesTheRunOfADeadInstance()
    {
        var engine = TestEngine.Create(db, "rescuer-1");
        await db.Seed.LeaseAsync("rescuer-1");
        var run = await db.Seed.RunAsync();
        await db.Seed.DeadInstanceAsync("dead-1");
        await db.Seed.ClaimRunAsync(run, "dead-1", TimeSpan.FromHours(1));

        await new RunRescuer(engine).RunAsync(CancellationToken.None);

        Assert.Equal("pending", await StateAsync(run));
        Assert.Equal(1, await db.ScalarAsync<int>("SELECT rescue_attempts FROM {schema}.agentpg_runs WHERE id = $1", run));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = $1 AND claimed_by_instance_id IS NOT NULL", run));
    }

    [DatabaseFact]
    public async Task RunAsync_WithoutTheLease_LeavesTheRunAlone()
    {
        var engine = TestEngine.Create(db, "rescuer-2");
        await db.Seed.LeaseAsync("someone-else");
        var run = await db.Seed.RunAsync();
        await db.Seed.DeadInstanceAsync("dead-2");
        await db.Seed.ClaimRunAsync(run, "dead-2", TimeSpan.FromHours(1));

        await new RunRescuer(engine).RunAsync(CancellationToken.None);

        Assert.Equal("streaming", await StateAsync(run));
        Assert.Equal("dead-2", await db.ScalarAsync<string>("SELECT claimed_by_instance_id FROM {schema}.agentpg_runs WHERE id = $1", run));
    }

    [DatabaseFact]
    public async Task RunAsync_RunOfALiveInstanceWithinTheTimeout_IsKept()
    {
        var engine = TestEngine.Create(db, "rescuer-3", o => o.RunRescue.Timeout = TimeSpan.FromMinutes(5));
        await db.Seed.LeaseAsync("rescuer-3");
        var run = await db.Seed.RunAsync();
        await db.Seed.InstanceAsync("alive-3", TimeSpan.Zero);
        await db.Seed.ClaimRunAsync(run, "alive-3", TimeSpan.FromMinutes(1));

        await new RunRescuer(engine).RunAsync(CancellationToken.None);

        Assert.Equal("streaming", await StateAsync(run));
    }

    [DatabaseFact]
    public async Task RunAsync_RescuedMoreThanMaxAttempts_FailsTheRun()
    {
        var engine = TestEngine.Create(db, "rescuer-4", o => o.RunRescue.MaxAttempts = 2);
        await db.Seed.LeaseAsync("rescuer-4");
        var run = await db.Seed.RunAsync();
        await db.Seed.DeadInstanceAsync("dead-4");
        await db.Seed.ClaimRunAsync(run, "dead-4", TimeSpan.FromHours(1), rescueAttempts: 2);

        await new RunRescuer(engine).RunAsync(CancellationToken.None);

        Assert.Equal("failed", await StateAsync(run));
        Assert.Equal("rescue_failed", await db.ScalarAsync<string>("SELECT error_type FROM {schema}.agentpg_runs WHERE id = $1", run));
    }

    [Fact]
    public void Interval_IsTheRescueInterval()
    {
        var engine = TestEngine.Create(db, "rescuer-5", o => o.RunRescue.Interval = TimeSpan.FromSeconds(42));

        Assert.Equal(TimeSpan.FromSeconds(42), new RunRescuer(engine).Interval);
    }
}
