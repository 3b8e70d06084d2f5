using AgentPg.Maintenance;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Maintenance;

public sealed class InstanceCleanupTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private Task<long> InstancesAsync(string id) => db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", id);

    [DatabaseFact]
    public async Task RunAsync_WhileLeading_DeletesStaleInstancesAndReleasesTheirWork()
    {
        var engine = TestEngine.Create(db, "cleaner-1", o => o.InstanceTtl = TimeSpan.FromSeconds(30));
        await db.Seed.LeaseAsync("cleaner-1");
        await db.Seed.InstanceAsync("fresh-1", TimeSpan.Zero);
        await db.Seed.DeadInstanceAsync("stale-1");
        var run = await db.Seed.RunAsync();
        await db.Seed.ClaimRunAsync(run, "stale-1", TimeSpan.FromHours(1));

        await new InstanceCleanup(engine).RunAsync(CancellationToken.None);

        Assert.Equal(0L, await InstancesAsync("stale-1"));
        Assert.Equal(1L, await InstancesAsync("fresh-1"));
        Assert.Equal("pending", await db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_runs WHERE id = $1", run));
    }

    [DatabaseFact]
    public async Task RunAsync_WithoutTheLease_DeletesNothing()
    {
        var engine = TestEngine.Create(db, "cleaner-2");
        await db.Seed.LeaseAsync("someone-else");
        await db.Seed.DeadInstanceAsync("stale-2");

        await new InstanceCleanup(engine).RunAsync(CancellationToken.None);

        Assert.Equal(1L, await InstancesAsync("stale-2"));
    }

    [DatabaseFact]
    public async Task RunAsync_NeverDeletesTheLeaderItself()
    {
        var engine = TestEngine.Create(db, "cleaner-3");
        await db.Seed.LeaseAsync("cleaner-3");
        await db.Seed.DeadInstanceAsync("cleaner-3");

        await new InstanceCleanup(engine).RunAsync(CancellationToken.None);

        Assert.Equal(1L, await InstancesAsync("cleaner-3"));
    }
}
