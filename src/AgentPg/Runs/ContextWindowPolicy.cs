using AgentPg.Compaction;
using AgentPg.Diagnostics;

namespace AgentPg.Runs;

/// <summary>What the engine does about the context window, for streaming and batch runs alike.</summary>
/// <remarks>
/// <para>Before a request: with <see cref="AgentPgOptions.AutoCompaction"/>, a root run whose request is estimated over
/// <see cref="CompactionOptions.Trigger"/> compacts its session first, at this boundary between two iterations (the run's
/// earlier iterations are all recorded, so its own messages may be compacted too), and the request is built again.</para>
/// <para>When Claude answers that the prompt is too long, or stops with <c>model_context_window_exceeded</c> (its answer ran
/// into the window; the cut-off answer is dropped): compaction (once per iteration, when enabled), then the 1M-token
/// window (when allowed), then the run fails with <c>context_window_exceeded</c> and a message that says what was tried.</para>
/// <para>Delegated (child) runs are never compacted: their conversation is their own task and stays short.</para>
/// </remarks>
internal sealed class ContextWindowPolicy(Engine engine)
{
    /// <summary>The detail of a failure for the <c>model_context_window_exceeded</c> stop reason.</summary>
    public const string GenerationExceeded = "Claude's answer reached the model's context window (stop_reason model_context_window_exceeded)";

    private readonly IterationStarter _starter = new(engine);

    /// <summary>Whether Claude's error message says the request does not fit the context window: the prompt is too long, or
    /// the prompt and max_tokens together exceed it. The same for a stream's error and a batch request's errored result.</summary>
    public static bool IsPromptTooLong(string? apiMessage)
        => apiMessage is not null
           && (apiMessage.StartsWith("prompt is too long", StringComparison.Ordinal) || apiMessage.Contains("exceed context limit", StringComparison.Ordinal));

    public async Task<IterationContext> BeforeRequestAsync(ClaimedRun claimed, IterationContext context, CancellationToken cancellationToken)
    {
        if (!engine.Options.AutoCompaction || claimed.Run.Depth != 0 || !engine.Compactor.IsOverTrigger(context))
        {
            return context;
        }

        return await CompactAndReloadAsync(claimed, context, Compactor.ReasonAuto, cancellationToken).ConfigureAwait(false) ?? context;
    }

    /// <summary>The prompt was too long, or the answer ran into the window: returns the context to send again (streaming) or
    /// submit again (batch; <see cref="ClaimedRun.UsedExtendedContext"/> says which window), or throws the run's failure.</summary>
    public async Task<IterationContext> OnPromptTooLongAsync(ClaimedRun claimed, IterationContext context, string detail, CancellationToken cancellationToken)
    {
        var compactionAllowed = engine.Options.AutoCompaction && claimed.Run.Depth == 0;
        if (compactionAllowed && !claimed.CompactedForContextWindow)
        {
            claimed.CompactedForContextWindow = true;
            if (await CompactAndReloadAsync(claimed, context, Compactor.ReasonContextWindow, cancellationToken).ConfigureAwait(false) is { } compacted)
            {
                return compacted;
            }
        }

        if (context.ExtendedContextAllowed && !claimed.UsedExtendedContext)
        {
            claimed.UsedExtendedContext = true;
            Log.ExtendedContextRetry(engine.Logger, claimed.Run.Id);
            return context;
        }

        throw Exceeded(context, detail, claimed.UsedExtendedContext, compactionAllowed);
    }

    /// <summary>The run's failure, saying truthfully what was tried and what is left to try.</summary>
    public static RunFailureException Exceeded(IterationContext context, string detail, bool triedExtended, bool triedCompaction)
    {
        const string compaction = "enable AgentPgOptions.AutoCompaction to compact the session";
        var extended = $"enable AgentPgOptions.ExtendedContext (or Config[\"extended_context\"] = true on agent '{context.Agent.Name}') to retry with " +
                       "the 1M-token window";
        var message = (triedCompaction, triedExtended) switch
        {
            (true, true) => $"The conversation does not fit Claude's context window even with automatic compaction and the 1M-token window ({detail}). " +
                            "Start a new session.",
            (true, false) => $"The conversation does not fit Claude's context window even with automatic compaction ({detail}): {extended}, " +
                             "lower CompactionOptions.ProtectedTokens/PreserveLastN, or start a new session.",
            (false, true) => $"The conversation does not fit Claude's context window even with the 1M-token window ({detail}): {compaction}, " +
                             "or start a new session.",
            _ => $"The conversation no longer fits Claude's context window ({detail}): {compaction}, {extended}, or start a new session.",
        };
        return new RunFailureException(ErrorTypes.ContextWindowExceeded, message);
    }

    private async Task<IterationContext?> CompactAndReloadAsync(ClaimedRun claimed, IterationContext context, string reason, CancellationToken cancellationToken)
    {
        var run = claimed.Run;
        try
        {
            // The summariser's stream is the run's progress meanwhile: a long summary must not get the run rescued.
            var progress = new ProgressReporter(engine, run, cancellationToken);
            await engine.Compactor.CompactAsync(run.SessionId, engine.Options.Compaction, reason, run.Id, onlyIfNeeded: false, cancellationToken, progress.Report)
                .ConfigureAwait(false);
        }
        catch (AgentPgException ex) when (ex.Code is AgentPgErrorCode.NothingToCompact or AgentPgErrorCode.CompactionFailed)
        {
            Log.AutoCompactionFailed(engine.Logger, ex, run.SessionId, run.Id);
            return null;
        }
        catch (InvalidOperationException ex)
        {
            Log.AutoCompactionFailed(engine.Logger, ex, run.SessionId, run.Id);
            return null;
        }

        return await _starter.LoadAsync(claimed, context.IterationNumber, context.IterationId, context.MaxTokens, includeHistory: true, cancellationToken)
            .ConfigureAwait(false);
    }
}
