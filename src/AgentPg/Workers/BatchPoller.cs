using System.Net;
using System.Text.Json;
using AgentPg.Claude;
using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Runs;
using AgentPg.Storage;
using Anthropic.Exceptions;
using Npgsql;

namespace AgentPg.Workers;

/// <summary>Polls the in-progress batches of the runs this instance holds (and of orphaned runs, which it adopts) every
/// <see cref="AgentPgOptions.BatchPollInterval"/>, and hands each result to the same recording as streamed answers.</summary>
/// <remarks>
/// Every outcome ends somewhere: succeeded → recorded; errored → resubmitted while Claude is unavailable (overloaded, rate
/// limited, failing) for up to <see cref="AgentPgOptions.ModelUnavailableTimeout"/> since the iteration's first errored
/// result (when that is zero, up to <see cref="AgentPgOptions.MaxModelRetries"/> times), else the run fails; canceled or missing from the results →
/// resubmitted, then failed; expired (or past its expiry without an end) → resubmitted once, then failed.
/// </remarks>
internal sealed class BatchPoller(Engine engine)
{
    // Due batches are polled PollConcurrency at a time (a poll is an HTTP round trip; an ended batch adds a download and a
    // recording), up to MaxPerTick per tick: a backlog of 1 000 finished batches is collected in two ticks, not 50 (review D17).
    private const int MaxPerTick = 500;
    private const int PollConcurrency = 8;

    // How long past a batch's expiry an unreachable API is tolerated before the run fails.
    private static readonly TimeSpan s_unreachableGrace = TimeSpan.FromHours(1);

    private static readonly HashSet<string> s_retryableErrors = ["overloaded_error", "api_error", "rate_limit_error", "timeout_error"];

    private readonly BatchApi _api = new(engine);
    private readonly IterationStarter _starter = new(engine);
    private readonly IterationRecorder _recorder = new(engine);
    private readonly RunFailurePolicy _failures = new(engine);
    private readonly BatchSubmitter _submitter = new(engine);
    private readonly ContextWindowPolicy _window = new(engine);
    private Task? _loop;

    public void Start(CancellationToken stop) => _loop = Internal.Background.Run(() => LoopAsync(stop));

    public Task StopAsync() => _loop ?? Task.CompletedTask;

    private async Task LoopAsync(CancellationToken stop)
    {
        using var timer = new PeriodicTimer(engine.Options.BatchPollInterval, engine.Time);
        try
        {
            while (await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
            {
                try
                {
                    await CancelAbandonedBatchesAsync(stop).ConfigureAwait(false);
                    await PollAsync(stop).ConfigureAwait(false);
                }
                catch (Exception ex) when (ex is not OperationCanceledException || !stop.IsCancellationRequested)
                {
                    Log.WorkerLoopFailed(engine.Logger, ex, "batch poller");
                    engine.Hooks.Error(ex);
                }
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
        }
    }

    /// <summary>Batches of runs that were cancelled (or otherwise ended) while their batch was in progress.</summary>
    private async Task CancelAbandonedBatchesAsync(CancellationToken cancellationToken)
    {
        List<string> batchIds;
        var command = engine.Sql.Iterations.TakeCancelingBatchesCommand(engine.DataSource);
        await using (command.ConfigureAwait(false))
        {
            batchIds = await command.QueryListAsync(IterationSql.ReadBatchId, cancellationToken).ConfigureAwait(false);
        }

        // Taken and marked ended by the statement: a failure here is logged and the batch runs out.
        await _api.CancelQuietlyAsync(batchIds, take: false, cancellationToken).ConfigureAwait(false);
    }

    private async Task PollAsync(CancellationToken cancellationToken)
    {
        List<BatchPollItem> items;
        // Due once a poll interval has passed; a little less so a poll right on the tick is not skipped.
        var command = engine.Sql.Runs.ForPollCommand(engine.DataSource, engine.InstanceId, engine.Options.BatchPollInterval * 0.9, MaxPerTick);
        await using (command.ConfigureAwait(false))
        {
            items = await command.QueryListAsync(RunSql.ReadForPoll, cancellationToken).ConfigureAwait(false);
        }

        var parallel = new ParallelOptions { MaxDegreeOfParallelism = PollConcurrency, CancellationToken = cancellationToken };
        await Parallel.ForEachAsync(items, parallel, async (item, ct) =>
        {
            try
            {
                await PollOneAsync(item, ct).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !ct.IsCancellationRequested)
            {
                // One batch's trouble (for example the database refusing its adoption) must not stop the others.
                Log.BatchPollFailed(engine.Logger, ex, item.Run.Id, item.BatchId);
            }
        }).ConfigureAwait(false);
    }

    private async Task PollOneAsync(BatchPollItem item, CancellationToken cancellationToken)
    {
        var run = item.Run;
        if (run.ClaimedByInstanceId is null)
        {
            var epoch = await AdoptAsync(run.Id, cancellationToken).ConfigureAwait(false);
            if (epoch is null)
            {
                return;
            }

            run = run with { ClaimedByInstanceId = engine.InstanceId, ClaimEpoch = epoch.Value };
            Log.BatchRunAdopted(engine.Logger, run.Id, item.BatchId);
        }

        var claimed = new ClaimedRun(run, null)
        {
            Iteration = item.IterationNumber,
            IterationId = item.IterationId,
            UsedExtendedContext = item.ExtendedContext,
            IterationUsage = item.DroppedUsage,
            TraceParent = item.TraceParent,
        };

        try
        {
            await PollClaimedAsync(claimed, item, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            // The span of a result's application (none for a poll that found the batch in progress).
            claimed.Activity?.Dispose();
        }
    }

    private async Task PollClaimedAsync(ClaimedRun claimed, BatchPollItem item, CancellationToken cancellationToken)
    {
        var run = claimed.Run;
        try
        {
            if (item.ResubmitDue)
            {
                claimed.Activity = Telemetry.StartBatchResult(claimed, item.BatchId, "errored");
                // The batch ended errored with Claude unavailable and the iteration's wait is over: nothing to poll.
                Log.BatchResubmitting(engine.Logger, run.Id, item.BatchId,
                    $"errored with Claude unavailable (failing for {Durations.Format(engine.Time.GetUtcNow() - (item.UnavailableSince ?? engine.Time.GetUtcNow()))}, " +
                    "AgentPgOptions.ModelUnavailableTimeout)");
                await ResubmitAsync(claimed, item, BatchSubmitter.Kind.AfterUnavailable, cancellationToken, item.UnavailableSince).ConfigureAwait(false);
                return;
            }

            var batch = await _api.RetrieveAsync(item.BatchId, cancellationToken).ConfigureAwait(false);
            await MarkPolledAsync(item.IterationId, cancellationToken).ConfigureAwait(false);
            switch (batch.ProcessingStatus.Raw())
            {
                case "in_progress":
                    if (batch.ExpiresAt <= engine.Time.GetUtcNow())
                    {
                        // Past its expiry without an end: it will not be processed any more.
                        claimed.Activity = Telemetry.StartBatchResult(claimed, item.BatchId, "expired");
                        await _api.CancelQuietlyAsync([item.BatchId], take: false, CancellationToken.None).ConfigureAwait(false);
                        await HandleExpiredAsync(claimed, item, cancellationToken).ConfigureAwait(false);
                    }
                    else if (run.State == RunState.BatchPending)
                    {
                        await SetStateAsync(run, RunState.BatchProcessing, cancellationToken).ConfigureAwait(false);
                    }

                    break;
                case "ended":
                    claimed.Activity = Telemetry.StartBatchResult(claimed, item.BatchId, null);
                    await HandleEndedAsync(claimed, item, cancellationToken).ConfigureAwait(false);
                    break;
            }
        }
        catch (Exception ex) when (ex.IsClaimLost())
        {
            Log.ClaimLost(engine.Logger, run.Id, run.ClaimEpoch);
        }
        catch (RunFailureException failure)
        {
            await _failures.FailAsync(claimed, failure.ErrorType, failure.Message).ConfigureAwait(false);
        }
        catch (AnthropicApiException ex) when (IsPermanent(ex))
        {
            // No later poll can succeed (404: the batch was deleted, or belongs to another API key or workspace).
            await _failures.FailAsync(claimed, ErrorTypes.BatchError,
                $"Message batch {item.BatchId} of iteration {item.IterationNumber} cannot be polled: Claude API error {(int)ex.StatusCode} " +
                $"{ex.Type?.Raw() ?? "error"}: {ex.ApiMessage ?? "(no message)"}" +
                (ex.StatusCode == HttpStatusCode.NotFound ? " (deleted, or created with another API key or workspace)." : ".")).ConfigureAwait(false);
        }
        catch (Exception ex) when (IsTransportFailure(ex, cancellationToken))
        {
            // The API is unreachable or busy (the SDK already retried): try again on the next tick, until the batch could
            // no longer produce a result anyway.
            Log.BatchPollFailed(engine.Logger, ex, run.Id, item.BatchId);
            if (item.ExpiresAt is { } expiresAt && engine.Time.GetUtcNow() > expiresAt + s_unreachableGrace)
            {
                await _failures.FailAsync(claimed, ErrorTypes.BatchError,
                    $"Message batch {item.BatchId} of iteration {item.IterationNumber} could not be polled since before it expired " +
                    $"({expiresAt:u}); last error: {ex.Message}").ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (Transient.IsTransient(ex))
        {
            // The database is unreachable: the next tick polls again.
            Log.BatchPollFailed(engine.Logger, ex, run.Id, item.BatchId);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            // A result that cannot be processed (malformed, refused by the database) would fail the same way at every poll:
            // the run fails, as a streamed answer would (review D2).
            Log.RunProcessingFailed(engine.Logger, ex, run.Id);
            await _failures.FailAsync(claimed, ErrorTypes.ProcessingError, $"Processing the result of message batch {item.BatchId} failed: {ex.Message}")
                .ConfigureAwait(false);
        }
    }

    private static bool IsPermanent(AnthropicApiException ex) => ModelRetries.Classify(ex) == ModelFailureKind.Permanent;

    private static bool IsTransportFailure(Exception ex, CancellationToken cancellationToken)
        => ex is AnthropicException or HttpRequestException or IOException
           || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested);

    private async Task HandleEndedAsync(ClaimedRun claimed, BatchPollItem item, CancellationToken cancellationToken)
    {
        var result = await _api.FindResultAsync(item.BatchId, item.IterationId, cancellationToken).ConfigureAwait(false);
        var type = result is { } r && r.TryGetProperty("type", out var t) ? t.GetString() : null;
        claimed.Activity?.SetTag("agentpg.batch.result", type ?? "missing");
        switch (type)
        {
            case "succeeded":
                if (!result!.Value.TryGetProperty("message", out var message) || message.ValueKind != JsonValueKind.Object)
                {
                    throw new RunFailureException(ErrorTypes.ProcessingError,
                        $"The batch result of iteration {item.IterationNumber} (batch {item.BatchId}) says succeeded but holds no message.");
                }

                var response = ModelResponse.FromMessage(message);
                claimed.IterationUsage += response.Usage;
                var context = await _starter.LoadAsync(claimed, item.IterationNumber, item.IterationId, item.MaxTokens, includeHistory: false, cancellationToken).ConfigureAwait(false);
                Telemetry.Answered(context.Agent.Model, response, "batch");
                Telemetry.BatchAnswered(claimed.Activity, response, engine.Options.Telemetry.CaptureContent);
                if (response.StopReason == StopReasons.ModelContextWindowExceeded)
                {
                    // The answer ran into the context window: dropped, and the request takes the prompt-too-long path.
                    await RetryTooLongAsync(claimed, item, ContextWindowPolicy.GenerationExceeded, cancellationToken, context).ConfigureAwait(false);
                    return;
                }

                await engine.Hooks.AfterMessageAsync(ModelCalls.Context(claimed, context, RunMode.Batch, null, message, response.Usage), cancellationToken).ConfigureAwait(false);
                await _recorder.RecordAsync(claimed, context, response, continueInPlace: false, cancellationToken).ConfigureAwait(false);
                engine.BatchWake.Set();
                return;

            case "errored":
                var error = result!.Value.TryGetProperty("error", out var e) && e.TryGetProperty("error", out var inner) ? inner : default;
                var errorType = error.ValueKind == JsonValueKind.Object && error.TryGetProperty("type", out var et) ? et.GetString() ?? "error" : "error";
                var errorMessage = error.ValueKind == JsonValueKind.Object && error.TryGetProperty("message", out var em) ? em.GetString() ?? "" : "";
                if (ContextWindowPolicy.IsPromptTooLong(errorMessage))
                {
                    await RetryTooLongAsync(claimed, item, errorMessage, cancellationToken).ConfigureAwait(false);
                    return;
                }

                if (errorType == "request_too_large") // the API's error type for a request over its size limit
                {
                    await RetryTooLargeAsync(claimed, item, errorMessage, cancellationToken).ConfigureAwait(false);
                    return;
                }

                if (s_retryableErrors.Contains(errorType) && engine.Options.ModelUnavailableTimeout is var limit && limit != TimeSpan.Zero)
                {
                    // Claude unavailable, as for a stream: resubmitted (a new batch) after the stream's backoff, until
                    // ModelUnavailableTimeout has passed since the iteration's first errored result. The wait is recorded
                    // with the iteration (a later poll resubmits), so it holds no poll slot and survives an adoption.
                    var now = engine.Time.GetUtcNow();
                    var since = item.UnavailableSince ?? now;
                    var failingFor = now - since;
                    if (limit == Timeout.InfiniteTimeSpan || failingFor < limit)
                    {
                        var wait = ModelRetries.UnavailableWait(engine.Options, item.UnavailableCount, failingFor, retryAfter: null);
                        await ResubmitLaterAsync(claimed, item, wait, since, cancellationToken).ConfigureAwait(false);
                        ModelRetries.AnnounceWait(engine, claimed.Run, item.IterationNumber, $"batch result {errorType}: {errorMessage}", wait, failingFor,
                            cancellationToken);
                        return;
                    }

                    throw new RunFailureException(ErrorTypes.BatchError,
                        $"Claude's batch request failed: {errorType}: {errorMessage} (errored for {Durations.Format(failingFor)}, {item.UnavailableCount} " +
                        $"resubmissions: Claude stayed unavailable for longer than AgentPgOptions.ModelUnavailableTimeout ({Durations.Format(limit)}))");
                }

                if (s_retryableErrors.Contains(errorType) && item.UnavailableCount < engine.Options.MaxModelRetries)
                {
                    await ResubmitAsync(claimed, item, BatchSubmitter.Kind.AfterUnavailable, cancellationToken).ConfigureAwait(false);
                    return;
                }

                throw new RunFailureException(ErrorTypes.BatchError,
                    $"Claude's batch request failed: {errorType}: {errorMessage}" +
                    (s_retryableErrors.Contains(errorType) ? $" (after {item.UnavailableCount} resubmissions; AgentPgOptions.MaxModelRetries = {engine.Options.MaxModelRetries})" : ""));

            case "expired":
                await HandleExpiredAsync(claimed, item, cancellationToken).ConfigureAwait(false);
                return;

            default:
                // "canceled" (by someone else: our own cancels end the run first) or no result line at all.
                var what = type == "canceled" ? "was canceled at the API" : "has no line in the batch results";
                if (item.ResubmitCount < engine.Options.MaxModelRetries)
                {
                    Log.BatchResubmitting(engine.Logger, claimed.Run.Id, item.BatchId, what);
                    await ResubmitAsync(claimed, item, BatchSubmitter.Kind.Resubmission, cancellationToken).ConfigureAwait(false);
                    return;
                }

                throw new RunFailureException(ErrorTypes.BatchError,
                    $"The batch request of iteration {item.IterationNumber} {what} (batch {item.BatchId}), also after {item.ResubmitCount} resubmissions.");
        }
    }

    private async Task HandleExpiredAsync(ClaimedRun claimed, BatchPollItem item, CancellationToken cancellationToken)
    {
        if (item.ExpiredCount == 0)
        {
            Log.BatchResubmitting(engine.Logger, claimed.Run.Id, item.BatchId, "expired");
            await ResubmitAsync(claimed, item, BatchSubmitter.Kind.AfterExpiry, cancellationToken).ConfigureAwait(false);
            return;
        }

        throw new RunFailureException(ErrorTypes.BatchExpired,
            $"The batch request of iteration {item.IterationNumber} expired twice without being processed (batch {item.BatchId}); " +
            "Claude's Message Batches API was too busy. Create the run again, or use RunFastAsync for the streaming API.");
    }

    private async Task ResubmitAsync(ClaimedRun claimed, BatchPollItem item, BatchSubmitter.Kind kind, CancellationToken cancellationToken,
        DateTimeOffset? unavailableSince = null)
    {
        // Still held? A run cancelled (or rescued) after this poll read it had its batch cancelled by that, and the poll then
        // finds it "canceled": a new batch would only be created at Claude to be cancelled again (and charged if answered
        // first). Claim lost here ends the poll quietly (PollOneAsync).
        await SetStateAsync(claimed.Run, null, cancellationToken).ConfigureAwait(false);
        var context = await _starter.LoadAsync(claimed, item.IterationNumber, item.IterationId, item.MaxTokens, includeHistory: true, cancellationToken).ConfigureAwait(false);
        await _submitter.SubmitAsync(claimed, context, kind, cancellationToken, unavailableSince).ConfigureAwait(false);
    }

    /// <summary>Records that the iteration's request is submitted again after <paramref name="wait"/> (fenced: a run cancelled
    /// or taken meanwhile is left alone).</summary>
    private async Task ResubmitLaterAsync(ClaimedRun claimed, BatchPollItem item, TimeSpan wait, DateTimeOffset unavailableSince,
        CancellationToken cancellationToken)
    {
        var batch = engine.DataSource.CreateBatch();
        await using (batch.ConfigureAwait(false))
        {
            engine.Sql.Runs.AddFence(batch, claimed.Run, engine.InstanceId, item.IterationId);
            engine.Sql.Iterations.AddResubmitLater(batch, item.IterationId, wait, unavailableSince);
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Compaction, then the 1M window, then the run's failure (<see cref="ContextWindowPolicy"/>), as for a stream.</summary>
    private async Task RetryTooLongAsync(ClaimedRun claimed, BatchPollItem item, string detail, CancellationToken cancellationToken,
        IterationContext? loaded = null)
    {
        var context = loaded
            ?? await _starter.LoadAsync(claimed, item.IterationNumber, item.IterationId, item.MaxTokens, includeHistory: false, cancellationToken).ConfigureAwait(false);
        await _window.OnPromptTooLongAsync(claimed, context, detail, cancellationToken).ConfigureAwait(false);
        await ResubmitAsync(claimed, item, BatchSubmitter.Kind.AfterContextWindow, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Compaction (when enabled), then the run's failure with <c>request_too_large</c>, as for a stream's 413.</summary>
    private async Task RetryTooLargeAsync(ClaimedRun claimed, BatchPollItem item, string detail, CancellationToken cancellationToken)
    {
        var context = await _starter.LoadAsync(claimed, item.IterationNumber, item.IterationId, item.MaxTokens, includeHistory: false, cancellationToken).ConfigureAwait(false);
        await _window.OnRequestTooLargeAsync(claimed, context, detail, cancellationToken).ConfigureAwait(false);
        await ResubmitAsync(claimed, item, BatchSubmitter.Kind.AfterContextWindow, cancellationToken).ConfigureAwait(false);
    }

    private async Task<long?> AdoptAsync(Guid runId, CancellationToken cancellationToken)
    {
        var command = engine.Sql.Runs.AdoptBatchRunCommand(engine.DataSource, runId, engine.InstanceId);
        await using (command.ConfigureAwait(false))
        {
            return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) as long?;
        }
    }

    private async Task MarkPolledAsync(Guid iterationId, CancellationToken cancellationToken)
    {
        var command = engine.Sql.Iterations.PolledCommand(engine.DataSource, iterationId);
        await using (command.ConfigureAwait(false))
        {
            await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>Fenced: sets the run's state, or (<paramref name="state"/> null) only checks that this instance still holds it.</summary>
    private async Task SetStateAsync(Run run, RunState? state, CancellationToken cancellationToken)
    {
        var batch = engine.DataSource.CreateBatch();
        await using (batch.ConfigureAwait(false))
        {
            engine.Sql.Runs.AddFence(batch, run, engine.InstanceId, null);
            if (state is { } newState)
            {
                engine.Sql.Runs.AddSetState(batch, run.Id, newState);
            }

            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}

/// <summary>An in-progress batch to poll: its iteration and the run (see <see cref="RunSql.ForPoll"/>).</summary>
/// <remarks><see cref="DroppedUsage"/>: what the iteration's earlier batches were charged for answers it dropped (a result cut off
/// by the context window), counted with its final result.</remarks>
internal sealed record BatchPollItem(Guid IterationId, int IterationNumber, string BatchId, DateTimeOffset? ExpiresAt, int ResubmitCount,
    int ExpiredCount, bool ExtendedContext, int? MaxTokens, Usage DroppedUsage, Run Run)
{
    /// <summary>Gets when the iteration's first batch result errored with Claude unavailable, if one did.</summary>
    public DateTimeOffset? UnavailableSince { get; init; }

    /// <summary>Gets how many times the iteration was resubmitted because Claude was unavailable (apart from
    /// <see cref="ResubmitCount"/>, the resubmissions after a canceled or missing result).</summary>
    public int UnavailableCount { get; init; }

    /// <summary>Gets whether the batch ended errored with Claude unavailable and the iteration's wait is over: the request is
    /// resubmitted without a poll.</summary>
    public bool ResubmitDue { get; init; }

    /// <summary>Gets the W3C trace context stored with the run, which the span of a result's application continues.</summary>
    public string? TraceParent { get; init; }
}
