using System.Net.Http;
using System.Text.Json;
using AgentPg.Claude;
using AgentPg.Diagnostics;
using AgentPg.Runs.Events;
using AgentPg.Storage;
using AgentPg.Workers;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;

namespace AgentPg.Runs;

/// <summary>Processes one claimed streaming run: iterations until the run completes, waits for tools, or fails.</summary>
/// <remarks>No transaction is open while Claude answers; every database step is one fenced batch (see
/// <see cref="IterationStarter"/> and <see cref="IterationRecorder"/>).</remarks>
internal sealed class RunProcessor(Engine engine)
{
    private static readonly IReadOnlyDictionary<string, JsonElement> s_noHeaders = new Dictionary<string, JsonElement>();

    private readonly IterationStarter _starter = new(engine);
    private readonly ContextWindowPolicy _window = new(engine);
    private readonly IterationRecorder _recorder = new(engine);
    private readonly RunFailurePolicy _failures = new(engine);
    private readonly RunLimits _limits = new(engine);

    public Task ProcessAsync(ClaimedRun claimed, StopTokens stop) => _failures.GuardAsync(claimed, async (token, record) =>
    {
        while (true)
        {
            var context = await _starter.StartAsync(claimed, streaming: true, token).ConfigureAwait(false);
            await _limits.EnsureWithinAsync(claimed, context, token).ConfigureAwait(false);
            context = await _window.BeforeRequestAsync(claimed, context, token).ConfigureAwait(false);
            ModelResponse response;
            Dictionary<string, JsonElement> body;
            while (true)
            {
                body = context.Body();
                if (engine.Hooks.HasBeforeMessage)
                {
                    // Serializing the request costs O(conversation): only for a hook that reads it.
                    await engine.Hooks.BeforeMessageAsync(ModelCalls.Context(claimed, context, RunMode.Streaming, body, null, null), token).ConfigureAwait(false);
                }

                claimed.IterationModel = context.Agent.Model;
                claimed.IterationMaxTokens = context.MaxTokens;
                try
                {
                    response = await CallWithRetriesAsync(claimed, context, body, token).ConfigureAwait(false);
                }
                catch (PromptTooLongException ex)
                {
                    context = ex.TooManyBytes
                        ? await _window.OnRequestTooLargeAsync(claimed, context, ex.Message, token).ConfigureAwait(false)
                        : await _window.OnPromptTooLongAsync(claimed, context, ex.Message, token).ConfigureAwait(false);
                    continue;
                }

                if (response.StopReason != StopReasons.ModelContextWindowExceeded)
                {
                    break;
                }

                // Generation ran into the context window: the cut-off answer is paid for but dropped, and the request takes
                // the path of a prompt that is too long (compaction, then the 1M window, then a failure that says so).
                claimed.IterationUsage += response.Usage;
                context = await _window.OnPromptTooLongAsync(claimed, context, ContextWindowPolicy.GenerationExceeded, token).ConfigureAwait(false);
            }

            // The answer is complete: from here on it is recorded even if the shutdown's deadline passes meanwhile (D13).
            claimed.IterationUsage += response.Usage;
            if (engine.Hooks.HasAfterMessage)
            {
                await engine.Hooks.AfterMessageAsync(ModelCalls.Context(claimed, context, RunMode.Streaming, body, response.ToMessageJson(), response.Usage), record).ConfigureAwait(false);
            }

            if (await _recorder.RecordAsync(claimed, context, response, continueInPlace: true, record).ConfigureAwait(false) == IterationOutcome.Done)
            {
                return;
            }
        }
    }, stop);

    private async Task<ModelResponse> CallWithRetriesAsync(ClaimedRun claimed, IterationContext context, Dictionary<string, JsonElement> body, CancellationToken token)
    {
        var retries = new ModelRetries(engine);
        ProgressReporter? progress = null;
        var deltas = engine.Deltas.Open(claimed, context.IterationNumber, token);
        await using var _ = deltas.ConfigureAwait(false);
        while (true)
        {
            // A chat span and a duration per attempt: an attempt that failed and is retried is a failed model call (error.type),
            // and the wait before the next one is no part of a call.
            using var chat = Telemetry.StartChat(claimed, context.Agent.Model, engine.Options.Telemetry.CaptureContent ? body : null);
            var started = engine.Time.GetTimestamp();
            try
            {
                deltas.BeginAttempt();
                ModelResponse response;
                using (retries.Attempt())
                {
                    response = await CallOnceAsync(claimed, context, body, deltas, token).ConfigureAwait(false);
                }

                Telemetry.ChatCompleted(chat, context.Agent.Model, response, engine.Time.GetElapsedTime(started), engine.Options.Telemetry.CaptureContent);
                return response;
            }
            catch (AnthropicBadRequestException ex) when (IsPromptTooLong(ex))
            {
                // A failed call like any other for telemetry, although the run may go on (compaction, the 1M window).
                Telemetry.ChatFailed(chat, context.Agent.Model, ex.GetType().Name, engine.Time.GetElapsedTime(started));
                throw new PromptTooLongException(ex.ApiMessage ?? ex.Message);
            }
            catch (AnthropicContentTooLargeException ex)
            {
                // 413: the request's bytes (images, documents, tool outputs) are over Claude's 32 MB, whatever the tokens.
                Telemetry.ChatFailed(chat, context.Agent.Model, ex.GetType().Name, engine.Time.GetElapsedTime(started));
                throw new PromptTooLongException(ex.ApiMessage ?? ex.Message, tooManyBytes: true);
            }
            catch (Exception ex) when (retries.KindOf(ex) is { } kind && (ex is AnthropicApiException || !token.IsCancellationRequested))
            {
                Telemetry.ChatFailed(chat, context.Agent.Model, ex.GetType().Name, engine.Time.GetElapsedTime(started));
                chat?.Stop();
                if (retries.OnFailure(ex, kind) is not { } wait)
                {
                    var error = ModelRetries.Error(ex);
                    throw new RunFailureException(ErrorTypes.ModelError, retries.Describe("Claude's streamed answer", kind, error, error));
                }

                // The worker is alive and knows why it waits: the rescue must not take the run for a stuck one.
                (progress ??= new ProgressReporter(engine, claimed.Run, token)).ReportNow();
                if (kind == ModelFailureKind.Unavailable && engine.Options.ModelUnavailableTimeout != TimeSpan.Zero)
                {
                    retries.AnnounceWait(claimed.Run, context.IterationNumber, ex, wait, token);
                }
                else
                {
                    Log.ModelRetry(engine.Logger, claimed.Run.Id, retries.Failures, ModelRetries.Error(ex));
                }

                await retries.WaitAsync(claimed.Run, wait, token).ConfigureAwait(false);
            }
        }
    }

    private async Task<ModelResponse> CallOnceAsync(ClaimedRun claimed, IterationContext context, Dictionary<string, JsonElement> body, DeltaStream deltas,
        CancellationToken token)
    {
        var claude = engine.Claude ?? throw new InvalidOperationException("No Claude API key (StartAsync checks it).");
        var parameters = MessageCreateParams.FromRawUnchecked(context.Headers(claimed.UsedExtendedContext), s_noHeaders, body);
        var progress = new ProgressReporter(engine, claimed.Run, token);
        var aggregator = new StreamAggregator { OnProgress = progress.Report, OnDelta = deltas.OnDelta };
        try
        {
            var events = claude.Messages.CreateStreaming(parameters, token);
            await foreach (var ev in events.WithCancellation(token).ConfigureAwait(false))
            {
                aggregator.Add(ev.Json);
            }

            if (!aggregator.Response.Completed)
            {
                throw new IOException("Claude's stream ended before message_stop.");
            }
        }
        catch (Exception) when (!aggregator.Response.Completed)
        {
            // A stream that failed mid-way is paid for as far as it went: message_start reported its input tokens (and
            // message_delta, when it came, the output so far). Counted in the iteration's usage, retried or not.
            claimed.IterationUsage += aggregator.Response.Usage;
            Telemetry.Answered(context.Agent.Model, aggregator.Response, "streaming");
            throw;
        }

        await deltas.CompleteAsync(aggregator.Response).ConfigureAwait(false);

        return aggregator.Response;
    }

    private static bool IsPromptTooLong(AnthropicBadRequestException ex) => ContextWindowPolicy.IsPromptTooLong(ex.ApiMessage);
}

/// <summary>Claude answered that the prompt does not fit the context window, or (<see cref="TooManyBytes"/>) that the request
/// is over its size limit; <see cref="ContextWindowPolicy"/> decides.</summary>
internal sealed class PromptTooLongException(string message, bool tooManyBytes = false) : Exception(message)
{
    /// <summary>Gets whether the request's size in bytes was refused (HTTP 413), not its tokens.</summary>
    public bool TooManyBytes { get; } = tooManyBytes;
}
