using AgentPg.Claude;
using AgentPg.Diagnostics;
using AgentPg.Runs;
using AgentPg.Storage;
using Anthropic.Exceptions;
using Npgsql;

namespace AgentPg.Workers;

/// <summary>Claims pending batch runs and submits each run's next iteration as its own message batch.</summary>
/// <remarks>
/// One request per batch (not one batch per claim cycle): a run's batch can then be cancelled at the API without touching
/// other runs, and a failed submission affects one run only. The poller (<see cref="BatchPoller"/>) takes it from there.
/// </remarks>
internal sealed class BatchRunWorker(Engine engine)
    : RunWorker(engine, RunMode.Batch, engine.BatchWake, engine.Options.MaxConcurrentRuns)
{
    private readonly IterationStarter _starter = new(engine);
    private readonly RunFailurePolicy _failures = new(engine);
    private readonly BatchSubmitter _submitter = new(engine);
    private readonly RunLimits _limits = new(engine);

    protected override string Name => "batch run worker";

    protected override Task ProcessAsync(ClaimedRun claimed, StopTokens stop) => _failures.GuardAsync(claimed, async (token, _) =>
    {
        var context = await _starter.StartAsync(claimed, streaming: false, token).ConfigureAwait(false);
        await _limits.EnsureWithinAsync(claimed, context, token).ConfigureAwait(false);
        await _submitter.SubmitAsync(claimed, context, BatchSubmitter.Kind.First, token).ConfigureAwait(false);
    }, stop);
}

/// <summary>Creates a batch for an iteration and records it (fenced); a batch that cannot be recorded is cancelled at the
/// API, so none is left unpolled.</summary>
internal sealed class BatchSubmitter(Engine engine)
{
    private readonly BatchApi _api = new(engine);
    private readonly ContextWindowPolicy _window = new(engine);

    // What a submission is counted as: each limit has its own count (a burst of overload used to spend the canceled/missing
    // result's MaxModelRetries).
    public enum Kind
    {
        First,

        /// <summary>After a canceled or missing result: batch_resubmit_count, at most MaxModelRetries.</summary>
        Resubmission,

        /// <summary>After an expiry: batch_expired_count, once.</summary>
        AfterExpiry,

        /// <summary>After a result errored with Claude unavailable: batch_unavailable_count (ModelUnavailableTimeout).</summary>
        AfterUnavailable,

        /// <summary>After a compaction or a switch to the 1M window: not counted (ContextWindowPolicy ends).</summary>
        AfterContextWindow,
    }

    // unavailableSince: when the iteration's first batch result errored with Claude unavailable, recorded with the submission
    // (an earlier one recorded is kept).
    public async Task SubmitAsync(ClaimedRun claimed, IterationContext context, Kind resubmission, CancellationToken cancellationToken,
        DateTimeOffset? unavailableSince = null)
    {
        var run = claimed.Run;
        string batchId;
        DateTimeOffset expiresAt;
        context = await _window.BeforeRequestAsync(claimed, context, cancellationToken).ConfigureAwait(false);
        var body = context.Body();
        if (engine.Hooks.HasBeforeMessage)
        {
            await engine.Hooks.BeforeMessageAsync(ModelCalls.Context(claimed, context, RunMode.Batch, body, null, null), cancellationToken).ConfigureAwait(false);
        }

        var retries = new ModelRetries(engine);
        ProgressReporter? progress = null;
        while (true)
        {
            try
            {
                // Never abandoned half-way: once the request is sent the batch may exist, and only a recorded (or cancelled)
                // batch is safe. A cancelled run makes the recording below fail, which cancels the batch at the API.
                cancellationToken.ThrowIfCancellationRequested();
                using (retries.Attempt())
                {
                    (batchId, expiresAt) = await _api.CreateAsync(context.IterationId, body, context.Headers(claimed.UsedExtendedContext), CancellationToken.None).ConfigureAwait(false);
                }

                break;
            }
            catch (AnthropicContentTooLargeException ex)
            {
                // 413: the batch's one request is over the Batches API's 256 MB (images, documents, tool outputs). As for a
                // stream: compacted once when enabled and submitted again, else the run fails with request_too_large.
                context = await _window.OnRequestTooLargeAsync(claimed, context, ex.ApiMessage ?? ex.Message, cancellationToken).ConfigureAwait(false);
                await SubmitAsync(claimed, context, resubmission, cancellationToken, unavailableSince).ConfigureAwait(false);
                return;
            }
            catch (Exception ex) when (retries.KindOf(ex, madeWithoutToken: true) is { } kind && (ex is AnthropicApiException || !cancellationToken.IsCancellationRequested))
            {
                // If a request whose answer was lost did create a batch, that batch cannot be found again (the API has no
                // idempotency key for it): it runs once, unpolled, and its result is never used.
                if (retries.OnFailure(ex, kind) is not { } wait)
                {
                    var error = ModelRetries.Error(ex);
                    throw new RunFailureException(ErrorTypes.BatchError,
                        retries.Describe("Creating the message batch", kind, error, $"Creating the message batch failed: {error}"), ex);
                }

                (progress ??= new ProgressReporter(engine, run, cancellationToken)).ReportNow();
                if (kind == ModelFailureKind.Unavailable && engine.Options.ModelUnavailableTimeout != TimeSpan.Zero)
                {
                    retries.AnnounceWait(run, context.IterationNumber, ex, wait, cancellationToken);
                }
                else
                {
                    Log.BatchCreateRetry(engine.Logger, run.Id, retries.Failures, ModelRetries.Error(ex));
                }

                await retries.WaitAsync(run, wait, cancellationToken).ConfigureAwait(false);
            }
        }

        var recorded = false;
        try
        {
            await Transient.RetryAsync(async ct =>
            {
                var batch = new NpgsqlBatch();
                await using (batch.ConfigureAwait(false))
                {
                    engine.Sql.Runs.AddFence(batch, run, engine.InstanceId, context.IterationId);
                    engine.Sql.Iterations.AddSubmitted(batch, context.IterationId, batchId, expiresAt, context.MaxTokens, claimed.UsedExtendedContext,
                        resubmission: resubmission == Kind.Resubmission, afterExpiry: resubmission == Kind.AfterExpiry,
                        usage: claimed.IterationUsage, unavailableSince: unavailableSince, afterUnavailable: resubmission == Kind.AfterUnavailable,
                        model: context.Agent.Model);
                    engine.Sql.Runs.AddSetState(batch, run.Id, RunState.BatchPending);
                    await engine.ExecuteNonQueryAsync(batch, ct).ConfigureAwait(false);
                }
            }, engine.Time, CancellationToken.None).ConfigureAwait(false);
            recorded = true;
            Log.BatchSubmitted(engine.Logger, run.Id, batchId, claimed.Iteration);
        }
        finally
        {
            if (!recorded)
            {
                // Cancelled or rescued meanwhile, or the database is gone: nobody would ever poll this batch.
                _ = _api.CancelQuietlyAsync([batchId], take: false, CancellationToken.None);
            }
        }
    }
}
