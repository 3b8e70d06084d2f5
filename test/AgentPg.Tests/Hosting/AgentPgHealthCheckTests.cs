using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Npgsql;

namespace AgentPg.Tests.Hosting;

public sealed class AgentPgHealthCheckTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task CheckHealth_StartedWorker_IsHealthyWithSchemaVersionAndHeartbeat()
    {
        var builder = HostFactory.Builder();
        // Fresh means younger than 2 × HeartbeatInterval. The fixture's 500 ms interval makes that a one-second window, which a
        // loaded machine can miss between the start's heartbeat and the check (the check then rightly says Degraded). With a
        // one-minute interval the start's heartbeat is fresh for two minutes: the check proves Healthy, not the scheduler's speed.
        builder.Services.AddAgentPg(HostFactory.Options(db, null, o => (o.HeartbeatInterval, o.InstanceTtl) = (TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(5))))
            .AddWorker();
        builder.Services.AddHealthChecks().AddAgentPg();
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();

            var entry = report.Entries["agentpg"];
            Assert.True(entry.Status == HealthStatus.Healthy, entry.Description);
            Assert.Equal(AgentPgMigrator.LatestVersion, entry.Data["schema_version"]);
            Assert.True(entry.Data.ContainsKey("heartbeat_age_seconds"));
        }
        finally
        {
            await host.StopAsync();
        }

        var afterStop = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
        Assert.Equal(HealthStatus.Unhealthy, afterStop.Entries["agentpg"].Status);
        Assert.Contains("not running", afterStop.Entries["agentpg"].Description, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task CheckHealth_NoInstanceHoldsTheLeaderLease_IsDegradedAndSaysTheLeadersJobsStopped()
    {
        // Before, a worker whose instances all failed to take the lease reported Healthy while rescue, cleanup, approval
        // timeouts and retention had stopped. The election is broken here by a trigger that refuses every write of the lease.
        await using var refuse = await db.TriggerAsync("refuse_leader", "BEFORE INSERT OR UPDATE", "agentpg_leader",
            "RAISE EXCEPTION 'election broken (test)';");
        await db.ExecuteAsync("DELETE FROM {schema}.agentpg_leader");
        var builder = HostFactory.Builder();
        builder.Services.AddAgentPg(HostFactory.Options(db, null, o =>
                (o.HeartbeatInterval, o.InstanceTtl, o.LeaderTtl) = (TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(5), TimeSpan.FromMilliseconds(200))))
            .AddWorker();
        builder.Services.AddHealthChecks().AddAgentPg();
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var health = host.Services.GetRequiredService<HealthCheckService>();
            HealthReportEntry entry = default;
            await Eventually.TrueAsync(async () => (entry = (await health.CheckHealthAsync()).Entries["agentpg"]).Status == HealthStatus.Degraded,
                "the check reports that no instance has held the leader lease for two LeaderTtl");

            Assert.Contains("No AgentPg instance has held the leader lease", entry.Description, StringComparison.Ordinal);
            Assert.Contains("rescuing the work of dead instances", entry.Description, StringComparison.Ordinal);
            // Degraded past 2 × LeaderTtl (0.4 s here); the figure is rounded to milliseconds, so 0.4003 s reads 0.4.
            Assert.True((double)entry.Data["leaderless_seconds"] >= 0.4, $"leaderless_seconds {entry.Data["leaderless_seconds"]}");

            // Elected again: healthy, with the leader named.
            await refuse.DisposeAsync();
            var client = host.Services.GetRequiredService<AgentPgClient>();
            // Healthy with the lease held (a 200-ms lease can lapse between a refresh and a check on a loaded machine: then the
            // check is Healthy without a leader until the next refresh, which is not what this waits for).
            await Eventually.TrueAsync(async () => (entry = (await health.CheckHealthAsync()).Entries["agentpg"]).Status == HealthStatus.Healthy
                && entry.Data.ContainsKey("leader"), "healthy once an instance holds the lease");
            Assert.Equal(client.InstanceId, entry.Data["leader"]);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [DatabaseFact]
    public async Task CheckHealth_RightAfterTheLeaderResigns_IsHealthy_AndCountsTheLeaderlessTimeFromTheResign()
    {
        // A graceful stop of the leader (a rolling deploy) resigns its lease. Before, the resign deleted the lease row and every
        // other instance's check then counted "no leader" from its own registration: an instance older than 2 × LeaderTtl
        // reported Degraded at once, although a successor takes the lease within LeaderTtl / 2. B never leads here (a
        // constraint refuses its id), so the time without a leader is measured, not raced.
        var ttl = TimeSpan.FromSeconds(2);
        var b = "health-b-" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"ALTER TABLE {{schema}}.agentpg_leader ADD CONSTRAINT health_b_never_leads CHECK (leader_id <> '{b}') NOT VALID");
        try
        {
            await using var a = await Harness.StartAsync(db, o => o.LeaderTtl = ttl);
            await Eventually.TrueAsync(async () => await db.ScalarAsync<object>("SELECT leader_id FROM {schema}.agentpg_leader WHERE expires_at > now()") as string
                == a.Client.InstanceId, "A to lead");

            var builder = HostFactory.Builder();
            builder.Services.AddAgentPg(HostFactory.Options(db, null, o =>
                    (o.InstanceId, o.HeartbeatInterval, o.InstanceTtl, o.LeaderTtl) = (b, TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(5), ttl)))
                .AddWorker();
            builder.Services.AddHealthChecks().AddAgentPg();
            using var host = builder.Build();
            await host.StartAsync();
            try
            {
                var health = host.Services.GetRequiredService<HealthCheckService>();
                await Eventually.TrueAsync(async () => await db.ScalarAsync<bool>(
                    "SELECT now() - created_at > interval '5 seconds' FROM {schema}.agentpg_instances WHERE id = $1", b), "B registered for over 2 × LeaderTtl");

                await a.Client.StopAsync();
                var entry = (await health.CheckHealthAsync()).Entries["agentpg"];

                Assert.True(entry.Status == HealthStatus.Healthy, entry.Description);
                // Nobody takes the lease after the resign: Degraded once two leases have passed since it.
                await Eventually.TrueAsync(async () => (entry = (await health.CheckHealthAsync()).Entries["agentpg"]).Status == HealthStatus.Degraded,
                    "Degraded once no instance has led for 2 × LeaderTtl");
                Assert.InRange((double)entry.Data["leaderless_seconds"], 4.0, 30.0);
            }
            finally
            {
                await host.StopAsync();
            }
        }
        finally
        {
            await db.ExecuteAsync("ALTER TABLE {schema}.agentpg_leader DROP CONSTRAINT health_b_never_leads");
        }
    }

    [DatabaseFact]
    public async Task CheckHealth_WorkerEvicted_IsUnhealthy()
    {
        var builder = HostFactory.Builder();
        builder.Services.AddAgentPg(HostFactory.Options(db, null, o => (o.HeartbeatInterval, o.InstanceTtl) = (TimeSpan.FromMinutes(1), TimeSpan.FromMinutes(5))))
            .AddWorker();
        builder.Services.AddHealthChecks().AddAgentPg("queue", tags: ["ready"]);
        using var host = builder.Build();
        await host.StartAsync();
        try
        {
            var client = host.Services.GetRequiredService<AgentPgClient>();
            await db.ExecuteAsync("DELETE FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId);

            var report = await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync(r => r.Tags.Contains("ready"));

            Assert.Equal(HealthStatus.Unhealthy, report.Entries["queue"].Status);
            Assert.Contains("not registered", report.Entries["queue"].Description, StringComparison.Ordinal);
        }
        finally
        {
            await host.StopAsync();
        }
    }

    [DatabaseFact]
    public async Task CheckHealth_SchemaNotMigrated_IsUnhealthyAndSaysHowToMigrate()
    {
        var schema = SchemaFixture.NewSchemaName();
        var builder = HostFactory.Builder();
        builder.Services.AddAgentPg(o => o.Schema = schema);
        builder.Services.AddHealthChecks().AddAgentPg();
        using var host = builder.Build();
        await host.StartAsync();

        var entry = (await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync()).Entries["agentpg"];

        Assert.Equal(HealthStatus.Unhealthy, entry.Status);
        Assert.Contains("at version 0", entry.Description, StringComparison.Ordinal);
        Assert.Contains("MigrateAsync", entry.Description, StringComparison.Ordinal);
        await host.StopAsync();
    }

    [Fact]
    public async Task CheckHealth_DatabaseDown_IsUnhealthy()
    {
        var builder = Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());
        // Port 1 on the loopback: nothing listens, the connection is refused at once.
        builder.Services.AddNpgsqlDataSource("Host=127.0.0.1;Port=1;Username=nobody;Timeout=5");
        builder.Services.AddAgentPg();
        builder.Services.AddHealthChecks().AddAgentPg(failureStatus: HealthStatus.Degraded);
        using var host = builder.Build();
        await host.StartAsync();

        var entry = (await host.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync()).Entries["agentpg"];

        Assert.Equal(HealthStatus.Degraded, entry.Status);
        Assert.Contains("cannot reach PostgreSQL", entry.Description, StringComparison.Ordinal);
        Assert.IsAssignableFrom<NpgsqlException>(entry.Exception);
        await host.StopAsync();
    }
}
