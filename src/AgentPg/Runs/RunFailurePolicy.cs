using AgentPg.Diagnostics;
using AgentPg.Storage;
using AgentPg.Workers;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>What becomes of a claimed run whose work ended with an exception (see <see cref="RunFailurePolicy.Decide"/>).</summary>
internal enum RunFailureAction
{
    /// <summary>The claim was taken away (cancelled, rescued): the work is dropped and nothing is written.</summary>
    ClaimLost,

    /// <summary>The run was cancelled (already final) or the shutdown's deadline came (the run is released): nothing is written.</summary>
    Cancelled,

    /// <summary>The run fails with <see cref="RunFailureDecision.ErrorType"/> and <see cref="RunFailureDecision.ErrorMessage"/>.</summary>
    Fail,

    /// <summary>The database stayed unreachable: the run stays claimed, and the rescue gives it to a live instance.</summary>
    LeaveForRescue,
}

/// <summary>The policy's decision for one exception.</summary>
internal readonly record struct RunFailureDecision(RunFailureAction Action, string? ErrorType = null, string? ErrorMessage = null);

/// <summary>The run failure policy, the same for streamed and batch runs: which exceptions fail a claimed run (and with what
/// error type and message), which leave it to the rescue, which only drop the work; and the fenced write of a failure.</summary>
internal sealed class RunFailurePolicy(Engine engine)
{
    /// <summary>Decides what an exception out of a claimed run's work means. <paramref name="cancelled"/>: the run's work was
    /// cancelled (a cancel of the run, or the shutdown's deadline).</summary>
    public static RunFailureDecision Decide(Exception exception, bool cancelled)
    {
        if (exception.IsClaimLost())
        {
            return new(RunFailureAction.ClaimLost);
        }

        if (exception is OperationCanceledException && cancelled)
        {
            return new(RunFailureAction.Cancelled);
        }

        if (exception is RunFailureException failure)
        {
            return new(RunFailureAction.Fail, failure.ErrorType, failure.Message);
        }

        if (!Transient.IsTransient(exception) && exception is not OperationCanceledException)
        {
            // A bug or a result the database refuses would fail the same way on another instance: the run fails (review D2).
            return new(RunFailureAction.Fail, ErrorTypes.ProcessingError, $"Processing the run failed: {exception.Message}");
        }

        return new(RunFailureAction.LeaveForRescue);
    }

    /// <summary>Runs the work of a claimed run under this policy: the run's in-flight work can be cancelled (cancel, shutdown),
    /// and an exception out of it is handled as <see cref="Decide"/> says.</summary>
    /// <remarks>The work gets two tokens: the first for work still to do (Claude's stream, the next iteration), cancelled by a
    /// cancel of the run and by the shutdown's deadline; the second for recording a result already obtained, cancelled only
    /// when the shutdown gives up on results (<see cref="StopTokens.Abandon"/>, review D13): an answer that reached
    /// message_stop before the deadline is written, not requested again elsewhere. A cancelled run's write fails its fence.</remarks>
    public async Task GuardAsync(ClaimedRun claimed, Func<CancellationToken, CancellationToken, Task> work, StopTokens stop)
    {
        var run = claimed.Run;
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(stop.HardStop);
        using var registration = engine.InFlight.Register(run.Id, cts);
        using var activity = Telemetry.StartInvokeAgent(claimed);
        claimed.Activity = activity;
        try
        {
            await work(cts.Token, stop.Abandon).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            var decision = Decide(ex, cts.IsCancellationRequested);
            switch (decision.Action)
            {
                case RunFailureAction.ClaimLost:
                    Log.ClaimLost(engine.Logger, run.Id, run.ClaimEpoch);
                    break;
                case RunFailureAction.Cancelled:
                    // Cancelled run (already final) or shutdown (the run is released by StopAsync).
                    Log.RunProcessingCancelled(engine.Logger, run.Id);
                    if (!stop.HardStop.IsCancellationRequested)
                    {
                        Telemetry.RunOutcome(activity, "cancelled");
                    }

                    break;
                case RunFailureAction.Fail:
                    if (ex is not RunFailureException)
                    {
                        Log.RunProcessingFailed(engine.Logger, ex, run.Id);
                    }

                    await FailAsync(claimed, decision.ErrorType!, decision.ErrorMessage!).ConfigureAwait(false);
                    break;
                default:
                    // The database stayed unreachable: leave the run claimed; rescue gives it to a live instance.
                    Log.RunProcessingFailed(engine.Logger, ex, run.Id);
                    break;
            }
        }
    }

    /// <summary>Fails the run and its current iteration (with the iteration's usage so far) in one fenced step, retried while the
    /// database is unreachable; a lost claim is not an error, and a database that stays away leaves the run to the rescue.</summary>
    public async Task FailAsync(ClaimedRun claimed, string errorType, string message)
    {
        var run = claimed.Run;
        var usage = claimed.IterationUsage;
        try
        {
            await Transient.RetryAsync(async ct =>
            {
                var batch = new NpgsqlBatch();
                await using (batch.ConfigureAwait(false))
                {
                    engine.Sql.Runs.AddLockParent(batch, run);
                    engine.Sql.Runs.AddFence(batch, run, engine.InstanceId, null);
                    if (claimed.IterationId is { } iterationId)
                    {
                        engine.Sql.Iterations.AddFail(batch, iterationId, usage, errorType, message, claimed.IterationModel, claimed.IterationMaxTokens,
                            claimed.IterationModel is not null && claimed.UsedExtendedContext);
                    }

                    engine.Sql.Runs.AddFail(batch, run.Id, errorType, message, usage);
                    await engine.ExecuteNonQueryAsync(batch, ct).ConfigureAwait(false);
                }
            }, engine.Time, CancellationToken.None).ConfigureAwait(false);
            Log.RunFailed(engine.Logger, run.Id, errorType, message);
            Telemetry.RunFinished(run, "failed", claimed.Activity);
            claimed.Activity.Error(errorType, message);
            AgentToolHook.Fire(engine, run);
        }
        catch (Exception ex) when (ex.IsClaimLost())
        {
            Log.ClaimLost(engine.Logger, run.Id, run.ClaimEpoch);
        }
        catch (NpgsqlException ex)
        {
            Log.RunProcessingFailed(engine.Logger, ex, run.Id);
        }
    }
}
