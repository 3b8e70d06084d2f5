using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL of the leader's run rescue (see Maintenance/RunRescuer).</summary>
internal sealed class RescueSql
{
    private const string Columns = "r.released_instances, r.released_runs, r.continued_runs, r.failed_run_modes";

    // Positions in Columns.
    private const int ReleasedInstancesColumn = 0, ReleasedRunsColumn = 1, ContinuedRunsColumn = 2, FailedRunModesColumn = 3;

    public RescueSql(SchemaName s, LeaderSql leader)
    {
        // $1 instance (the leader, whose own work is never released), $2 instance ttl, $3 rescue timeout, $4 max rescue
        // attempts. No row when $1 does not lead.
        Rescue = $"""
            SELECT {Columns}
              FROM ({leader.LeaseHeldBy}) leader, LATERAL {s}.agentpg_rescue($2, $3, $4, $1) r
            """;
        // $1 instance (the leader), $2 bound, $3 max rescue attempts. Work of live instances that they do not report as in
        // flight (see Maintenance/StuckWorkSweeper). No row when $1 does not lead.
        ReleaseUnheldWork = $"""
            SELECT r.released, r.failed_run_modes
              FROM ({leader.LeaseHeldBy}) leader, LATERAL {s}.agentpg_release_unheld_work($2, $3) r
            """;
    }

    public string Rescue { get; }

    public string ReleaseUnheldWork { get; }

    public void AddRescue(NpgsqlBatch batch, string leaderId, TimeSpan instanceTtl, TimeSpan rescueTimeout, int maxAttempts)
        => batch.Append(Rescue, P.Text(leaderId), P.Interval(instanceTtl), P.Interval(rescueTimeout), P.Int(maxAttempts));

    /// <summary>Adds <see cref="ReleaseUnheldWork"/> (no row when the leader lost the lease; read with <see cref="ReadReleaseUnheldWork"/>).</summary>
    public void AddReleaseUnheldWork(NpgsqlBatch batch, string leaderId, TimeSpan bound, int maxAttempts)
        => batch.Append(ReleaseUnheldWork, P.Text(leaderId), P.Interval(bound), P.Int(maxAttempts));

    /// <summary>How many runs and tool executions <see cref="ReleaseUnheldWork"/> released, and the mode of each run it failed.</summary>
    public static (int Released, string[] FailedRunModes) ReadReleaseUnheldWork(NpgsqlDataReader reader)
        => (reader.GetInt32(0), reader.GetFieldValue<string[]>(1));

    public static RescueResult ReadRescue(NpgsqlDataReader reader)
        => new(reader.GetFieldValue<string[]>(ReleasedInstancesColumn), reader.GetInt32(ReleasedRunsColumn), reader.GetInt32(ContinuedRunsColumn),
            reader.GetFieldValue<string[]>(FailedRunModesColumn));
}

/// <summary>What one rescue pass did: the dead instances whose work it gave back, how many runs and tool executions it
/// released, how many runs it continued, and the mode of each run it failed (rescued too often).</summary>
internal sealed record RescueResult(IReadOnlyList<string> DeadInstances, int Released, int Continued, IReadOnlyList<string> FailedRunModes);
