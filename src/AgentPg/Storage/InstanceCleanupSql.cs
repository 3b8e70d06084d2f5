using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL of the leader's stale-instance cleanup (see Maintenance/InstanceCleanup).</summary>
internal sealed class InstanceCleanupSql
{
    public InstanceCleanupSql(SchemaName s, LeaderSql leader)
    {
        // $1 instance (the leader), $2 instance ttl, $3 max rescue attempts. Releases the stale instances' work, then deletes
        // them; one row per deleted instance, with the mode of each run it failed (rescued too often). No row when $1 does not lead.
        DeleteStale = $"""
            SELECT c.instance_id, c.failed_run_modes
              FROM ({leader.LeaseHeldBy}) leader, LATERAL {s}.agentpg_cleanup_stale_instances($1, $2, $3) c
            """;
    }

    public string DeleteStale { get; }

    public void AddDeleteStale(NpgsqlBatch batch, string leaderId, TimeSpan instanceTtl, int maxAttempts)
        => batch.Append(DeleteStale, P.Text(leaderId), P.Interval(instanceTtl), P.Int(maxAttempts));

    // Positions in DeleteStale's SELECT list.
    private const int IdColumn = 0, FailedRunModesColumn = 1;

    public static (string Instance, string[] FailedRunModes) ReadDeleted(NpgsqlDataReader reader)
        => (reader.GetString(IdColumn), reader.GetFieldValue<string[]>(FailedRunModesColumn));
}
