using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_leader: the lease one instance holds to run the leader-only jobs.</summary>
internal sealed class LeaderSql
{
    public LeaderSql(SchemaName s)
    {
        var t = $"{s}.agentpg_leader";
        // Takes the lease when nobody holds a live one. $1 instance, $2 ttl. One row back when acquired.
        TryAcquire = $"""
            INSERT INTO {t} (name, leader_id, elected_at, expires_at) VALUES ('default', $1, now(), now() + $2)
            ON CONFLICT (name) DO UPDATE SET leader_id = EXCLUDED.leader_id, elected_at = now(), expires_at = now() + $2
             WHERE {t}.expires_at < now() OR {t}.leader_id = EXCLUDED.leader_id
            RETURNING leader_id
            """;
        // Extends the lease if it is still ours and alive. 0 rows: leadership lost.
        Refresh = $"UPDATE {t} SET expires_at = now() + $2 WHERE leader_id = $1 AND expires_at > now()";
        // Ends the lease now rather than deleting it: the row keeps when the last lease ended, which the health check's
        // "no leader for how long" reads (without it, the time would count from its own registration).
        Resign = $"UPDATE {t} SET expires_at = now() WHERE leader_id = $1 AND expires_at > now()";
        LeaseHeldBy = $"SELECT 1 FROM {t} WHERE leader_id = $1 AND expires_at > now()";
    }

    public string TryAcquire { get; }

    public string Refresh { get; }

    public string Resign { get; }

    /// <summary>One row when the instance in $1 holds a live lease. Leader-only statements select from it, so a leader that
    /// lost its lease without noticing (a paused process) cannot act.</summary>
    public string LeaseHeldBy { get; }

    public void AddTryAcquire(NpgsqlBatch batch, string instanceId, TimeSpan ttl) => batch.Append(TryAcquire, P.Text(instanceId), P.Interval(ttl));

    public void AddRefresh(NpgsqlBatch batch, string instanceId, TimeSpan ttl) => batch.Append(Refresh, P.Text(instanceId), P.Interval(ttl));

    public void AddResign(NpgsqlBatch batch, string instanceId) => batch.Append(Resign, P.Text(instanceId));
}
