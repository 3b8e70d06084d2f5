using Microsoft.Extensions.Diagnostics.HealthChecks;
using Npgsql;

namespace AgentPg.Hosting;

/// <summary>Reports whether PostgreSQL answers, the schema is at the version this AgentPg needs, and — in a worker process —
/// whether the instance is started, its heartbeat is fresh and some instance holds the leader lease.</summary>
internal sealed class AgentPgHealthCheck(AgentPgClient client, AgentPgRegistration registration) : IHealthCheck
{
    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var failure = context.Registration.FailureStatus;
        var options = client.Options;
        var data = new Dictionary<string, object> { ["schema"] = options.Schema, ["instance_id"] = client.InstanceId };
        int version;
        try
        {
            version = await new AgentPgMigrator(client.DataSource, options.Schema).GetVersionAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException && !cancellationToken.IsCancellationRequested)
        {
            return new HealthCheckResult(failure, $"AgentPg cannot reach PostgreSQL: {ex.Message}", ex, data);
        }

        data["schema_version"] = version;
        if (version != AgentPgMigrator.LatestVersion)
        {
            var what = version > AgentPgMigrator.LatestVersion
                ? $"newer than this AgentPg knows ({AgentPgMigrator.LatestVersion}); upgrade the AgentPg package"
                : $"this AgentPg needs version {AgentPgMigrator.LatestVersion}. {AgentPgMigrator.HowToMigrate(options.Schema)}";
            return new HealthCheckResult(failure, $"The AgentPg schema \"{options.Schema}\" is at version {version}; {what}", data: data);
        }

        if (!registration.RunWorker)
        {
            return HealthCheckResult.Healthy($"PostgreSQL answers and the AgentPg schema \"{options.Schema}\" is at version {version}.", data);
        }

        if (!client.IsStarted)
        {
            return new HealthCheckResult(failure, $"The AgentPg worker {client.InstanceId} is not running (not started yet, or stopping).", data: data);
        }

        TimeSpan? age;
        try
        {
            age = await client.GetHeartbeatAgeAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException && !cancellationToken.IsCancellationRequested)
        {
            return new HealthCheckResult(failure, $"AgentPg cannot reach PostgreSQL: {ex.Message}", ex, data);
        }

        if (age is not { } heartbeatAge)
        {
            return new HealthCheckResult(failure,
                $"The AgentPg worker {client.InstanceId} is not registered in the database (evicted after missing heartbeats; it registers again on its next heartbeat).",
                data: data);
        }

        data["heartbeat_age_seconds"] = Math.Round(heartbeatAge.TotalSeconds, 3);
        if (heartbeatAge > options.InstanceTtl)
        {
            return new HealthCheckResult(failure,
                $"The AgentPg worker {client.InstanceId} last recorded a heartbeat {heartbeatAge.TotalSeconds:0.#} s ago, longer than InstanceTtl ({options.InstanceTtl}): other instances may rescue its work.",
                data: data);
        }

        // Two missed beats: still alive for the others, but something slows it down.
        if (heartbeatAge > 2 * options.HeartbeatInterval)
        {
            return HealthCheckResult.Degraded(
                $"The AgentPg worker {client.InstanceId} last recorded a heartbeat {heartbeatAge.TotalSeconds:0.#} s ago (HeartbeatInterval {options.HeartbeatInterval}).",
                data: data);
        }

        (string? LeaderId, TimeSpan? Leaderless)? leader;
        try
        {
            leader = await client.GetLeaderStatusAsync(cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException && !cancellationToken.IsCancellationRequested)
        {
            return new HealthCheckResult(failure, $"AgentPg cannot reach PostgreSQL: {ex.Message}", ex, data);
        }

        if (leader is { LeaderId: { } leaderId })
        {
            data["leader"] = leaderId;
        }

        // Every started instance tries to take an expired lease every LeaderTtl/2: none for two leases means the election
        // fails everywhere, and the leader's jobs have stopped with it.
        if (leader is { Leaderless: { } leaderless } && leaderless > 2 * options.LeaderTtl)
        {
            data["leaderless_seconds"] = Math.Round(leaderless.TotalSeconds, 3);
            return HealthCheckResult.Degraded(
                $"No AgentPg instance has held the leader lease for {leaderless.TotalSeconds:0.#} s (LeaderTtl {options.LeaderTtl}): the leader's jobs " +
                "(rescuing the work of dead instances and removing them, the stuck-work sweep, approval timeouts, run event retention …) are not running. Every started " +
                "instance, this one included, tries to take the lease: look for leader election errors in their logs.",
                data: data);
        }

        return HealthCheckResult.Healthy($"PostgreSQL answers, the AgentPg schema \"{options.Schema}\" is at version {version} and the worker's heartbeat is fresh.", data);
    }
}
