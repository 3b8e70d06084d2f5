using AgentPg.Diagnostics;
using AgentPg.Internal;
using Npgsql;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Explains what a run is waiting for: whether any live instance can claim it, which of its agent's tools no
    /// live instance registered, and which earlier run of its session it is queued behind.</summary>
    /// <param name="runId">The run.</param>
    /// <param name="cancellationToken">Cancels the query.</param>
    /// <returns>The diagnosis; <see cref="RunDiagnostics.Problem"/> is set when the run is pending and no live instance can
    /// claim it (no instance is started, or none registered every tool the agent lists).</returns>
    /// <remarks>Works on any client, started or not; one read-only query. A run nobody can claim is not failed: it waits
    /// until an instance that has the agent's tools starts. The leader instance also logs such runs as a warning (event
    /// id 7101, once per agent and condition), and <see cref="WaitForRunAsync"/> logs one (event id 1301) when it waited a
    /// few poll intervals for one.</remarks>
    /// <exception cref="AgentPgException">No run has that id (<see cref="AgentPgErrorCode.RunNotFound"/>).</exception>
    public async Task<RunDiagnostics> GetRunDiagnosticsAsync(Guid runId, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetRunDiagnostics", null, cancellationToken).ConfigureAwait(false);
        return await DiagnoseRunAsync(runId, cancellationToken).ConfigureAwait(false) ?? throw RunNotFound(runId, "GetRunDiagnostics");
    }

    /// <summary>How long a wait lets a pending run go unclaimed before diagnosing it: five poll intervals, so a worker that
    /// is starting or busy has time to claim it.</summary>
    private TimeSpan UnclaimedGracePeriod => _options.RunPollInterval * 5;

    private async Task<RunDiagnostics?> DiagnoseRunAsync(Guid runId, CancellationToken cancellationToken)
    {
        var diagnosis = await _sql.Diagnostics.RunAsync(_dataSource, runId, _options.InstanceTtl, cancellationToken).ConfigureAwait(false);
        return diagnosis is { State: RunState.Pending }
            ? diagnosis with
            {
                Problem = Unclaimable.Describe(_options.Schema, diagnosis.AgentName, diagnosis.AgentTools, diagnosis.LiveInstanceCount,
                    diagnosis.MissingTools, diagnosis.HasEligibleInstance),
            }
            : diagnosis;
    }

    /// <summary>Called once per wait, after the grace period: logs why nobody claims the run, if nobody can.</summary>
    private async Task WarnIfUnclaimableAsync(Guid runId, TimeSpan waited, CancellationToken cancellationToken)
    {
        try
        {
            var diagnosis = await DiagnoseRunAsync(runId, cancellationToken).ConfigureAwait(false);
            if (diagnosis is { Problem: { } problem })
            {
                Log.WaitingForUnclaimableRun(_logger, runId, diagnosis.AgentName, waited.TotalSeconds,
                    diagnosis.MissingTools.Count == 0 ? "none" : string.Join(", ", diagnosis.MissingTools), problem);
            }
            else if (diagnosis is not null)
            {
                Log.WaitingForClaimableRun(_logger, runId, waited.TotalSeconds, diagnosis.LiveInstanceCount);
            }
        }
        catch (NpgsqlException ex)
        {
            // The diagnosis is a courtesy; the wait goes on and the next poll reports a real database problem.
            Log.DiagnosisFailed(_logger, ex, runId);
        }
    }
}
