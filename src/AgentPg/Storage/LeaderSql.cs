namespace AgentPg.Storage;

/// <summary>SQL for agentpg_leader and the leader-only maintenance.</summary>
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
        Resign = $"DELETE FROM {t} WHERE leader_id = $1";
        GetLeader = $"SELECT leader_id FROM {t} WHERE expires_at > now()";

        // Leader-only jobs run only while the lease is live in the database, so a leader that lost its lease without
        // noticing (a paused process) cannot act.
        var isLeader = $"SELECT 1 FROM {t} WHERE leader_id = $1 AND expires_at > now()";
        // $1 instance, $2 instance ttl, $3 rescue timeout, $4 max rescue attempts
        Rescue = $"""
            SELECT r.released_instances, r.released_runs, r.continued_runs
              FROM ({isLeader}) leader, LATERAL {s}.agentpg_rescue($2, $3, $4, $1) r
            """;
        // $1 instance, $2 instance ttl, $3 max rescue attempts. Releases the stale instances' work, then deletes them.
        DeleteStaleInstances = $"""
            SELECT c.id
              FROM ({isLeader}) leader, LATERAL {s}.agentpg_cleanup_stale_instances($1, $2, $3) AS c(id)
            """;
    }

    public string TryAcquire { get; }

    public string Refresh { get; }

    public string Resign { get; }

    public string GetLeader { get; }

    public string Rescue { get; }

    public string DeleteStaleInstances { get; }
}
