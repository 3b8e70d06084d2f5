using System.Globalization;
using System.Text.RegularExpressions;
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
internal sealed partial class ContextWindowPolicy(Engine engine)
{
    /// <summary>The detail of a failure for the <c>model_context_window_exceeded</c> stop reason.</summary>
    public const string GenerationExceeded = "Claude's answer reached the model's context window (stop_reason model_context_window_exceeded)";

    private readonly IterationStarter _starter = new(engine);

    /// <summary>Whether Claude's error message says the request does not fit the context window: the prompt is too long, or
    /// the prompt and max_tokens together exceed it. The same for a stream's error and a batch request's errored result.</summary>
    public static bool IsPromptTooLong(string? apiMessage)
        => apiMessage is not null
           && (apiMessage.StartsWith("prompt is too long", StringComparison.Ordinal) || apiMessage.Contains("exceed context limit", StringComparison.Ordinal));

    /// <summary>The prompt's size in Claude's "prompt is too long: N tokens > M maximum" message, if it says.</summary>
    public static long? PromptTokens(string? apiMessage)
        => apiMessage is not null && PromptTokensPattern().Match(apiMessage) is { Success: true } match
           && long.TryParse(match.Groups[1].ValueSpan, NumberStyles.None, CultureInfo.InvariantCulture, out var tokens)
            ? tokens
            : null;

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

    /// <summary>Claude refused the request's size (HTTP 413, over 32 MB, or 256 MB for a batch: images, documents and tool outputs, which a token
    /// count does not see): compaction (once per iteration, when enabled) prunes old tool outputs and summarises old turns;
    /// the 1M-token window would not help. Returns the context to send again, or throws the run's failure.</summary>
    public async Task<IterationContext> OnRequestTooLargeAsync(ClaimedRun claimed, IterationContext context, string detail, CancellationToken cancellationToken)
    {
        var compactionAllowed = engine.Options.AutoCompaction && claimed.Run.Depth == 0;
        if (compactionAllowed && !claimed.CompactedForContextWindow)
        {
            claimed.CompactedForContextWindow = true;

            // Tokens do not measure bytes (a 5 MB image is ~1 600 tokens): the newest ProtectedTokens would keep every image
            // of a short conversation. Only the PreserveLastN newest messages are kept as they are.
            var options = engine.Options.Compaction.Clone();
            options.ProtectedTokens = 0;
            if (await CompactAndReloadAsync(claimed, context, Compactor.ReasonRequestTooLarge, cancellationToken, options).ConfigureAwait(false) is { } compacted)
            {
                return compacted;
            }
        }

        const string why = "the conversation's images, documents and tool outputs are sent with every request";
        var limit = claimed.Run.RunMode == RunMode.Batch ? "32 MB per request and 256 MB per message batch" : "32 MB";
        throw new RunFailureException(ErrorTypes.RequestTooLarge, compactionAllowed
            ? $"The request is over Claude's size limit of {limit} even after automatic compaction ({detail}): {why}. Start a new " +
              "session, and have the tools return smaller images, documents and outputs."
            : $"The request is over Claude's size limit of {limit} ({detail}): {why}. Enable AgentPgOptions.AutoCompaction (it prunes old " +
              "tool outputs first), compact the session with CompactAsync (ProtectedTokens = 0 prunes even recent tool outputs), or start a new session; and have the tools return smaller " +
              "images, documents and outputs (AgentPgOptions.MaxToolOutputLength).");
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

    private async Task<IterationContext?> CompactAndReloadAsync(ClaimedRun claimed, IterationContext context, string reason, CancellationToken cancellationToken,
        CompactionOptions? options = null)
    {
        var run = claimed.Run;
        try
        {
            // The summariser's stream is the run's progress meanwhile: a long summary must not get the run rescued.
            var progress = new ProgressReporter(engine, run, cancellationToken);
            // Claude unavailable for the summary: waited out as the run's own model calls are, and the run fails with
            // model_error if it stays unavailable (not a context_window_exceeded that compaction "could not" avoid).
            var result = await engine.Compactor.CompactAsync(run.SessionId, options ?? engine.Options.Compaction, reason, run.Id, onlyIfNeeded: false,
                    cancellationToken, progress.Report, new RunModelWait(new ModelRetries(engine), claimed, progress))
                .ConfigureAwait(false);
            if (result is null)
            {
                return null;
            }
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

    [GeneratedRegex(@"^prompt is too long: (\d{1,18}) tokens", RegexOptions.CultureInvariant)]
    private static partial Regex PromptTokensPattern();
}
