namespace AgentPg.Maintenance;

/// <summary>A job only the leader runs, on its own interval, while it holds the lease.</summary>
/// <remarks>
/// To add one: derive from <see cref="MaintenanceService"/> in this folder, put its SQL in <c>Storage/</c> (checking the lease itself, see
/// <see cref="Storage.LeaderSql.LeaseHeldBy"/>, so a leader that lost its lease without noticing cannot act), and list it in
/// <see cref="MaintenanceRunner.CreateServices"/>. The runner calls the jobs one at a time, so two jobs never contend for the
/// same rows; a job that throws is logged and reported to <see cref="AgentPgHooks.OnError"/> and runs again at its next
/// interval.
/// </remarks>
internal interface IMaintenanceService
{
    /// <summary>Gets the name the job is logged under.</summary>
    string Name { get; }

    /// <summary>Gets how long the runner waits between two runs of the job.</summary>
    TimeSpan Interval { get; }

    /// <summary>Runs the job once.</summary>
    /// <param name="cancellationToken">Cancelled when this instance stops leading or stops.</param>
    Task RunAsync(CancellationToken cancellationToken);
}
