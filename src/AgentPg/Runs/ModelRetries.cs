using System.Net.Http;
using AgentPg.Claude;
using AgentPg.Internal;
using AgentPg.Storage;
using Anthropic.Exceptions;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>What a failed model call says about trying it again.</summary>
internal enum ModelFailureKind
{
    /// <summary>Claude refused the request (400, 401, 403, 404, 422…): the same request fails again.</summary>
    Permanent,

    /// <summary>The answer broke on the way (a stream cut off, malformed, timed out): retried
    /// <see cref="AgentPgOptions.MaxModelRetries"/> times.</summary>
    Broken,

    /// <summary>Claude is unavailable for now: rate limited (429), overloaded (529, <c>overloaded_error</c>), failing (5xx,
    /// <c>api_error</c>) or unreachable (the connection cannot be made). Retried with backoff for as long as
    /// <see cref="AgentPgOptions.ModelUnavailableTimeout"/> allows; when that is zero, as a broken answer inside a stream and
    /// not at all after an HTTP error status (the SDK retried it).</summary>
    Unavailable,
}

/// <summary>The retry policy of one model call (a streamed answer, or the creation of a run's message batch), the same for
/// both: counts the failures, decides whether and when the call is tried again, and words the run's error when it is not.</summary>
/// <remarks>
/// <para>The SDK has already retried what it retries (connection errors, its own timeouts; and, when
/// <see cref="AgentPgOptions.ModelUnavailableTimeout"/> is zero, 408, 409, 429 and 5xx before a stream starts) before an
/// exception gets here. A broken answer is retried soon (250 ms, 500 ms…), up to <see cref="AgentPgOptions.MaxModelRetries"/>
/// times. When Claude says it is unavailable, the call is retried with exponential backoff instead (1 s doubling to a minute,
/// jittered, never more than a quarter of <see cref="RunRescueOptions.Timeout"/> so the rescue does not take the waiting run
/// for a stuck one), until <see cref="AgentPgOptions.ModelUnavailableTimeout"/> has passed since the call first failed: an
/// outage of Claude delays runs instead of failing them. An error status then comes here straight from its first answer
/// (<see cref="Attempt"/>): the SDK would obey its <c>retry-after</c> however long, with no progress reported and no way to
/// cancel but the call's token. Here the server's <c>retry-after-ms</c> / <c>retry-after</c> is a floor for the next wait
/// (capped by the quarter of the rescue timeout and the time left), and its <c>x-should-retry</c> is obeyed
/// (<see cref="KindOf"/>).</para>
/// <para>The caller reports the run's progress while it waits (the worker is alive) and waits on the run's token, so a cancel
/// or the shutdown's deadline ends the wait.</para>
/// </remarks>
internal sealed class ModelRetries(Engine engine)
{
    private static readonly TimeSpan s_firstWait = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan s_longestWait = TimeSpan.FromMinutes(1);

    private readonly ServerRetryAdvice _advice = new();
    private long _firstFailure;
    private int _failures;
    private int _quickRetries;
    private int _waits;

    /// <summary>Gets how many times the call failed so far.</summary>
    public int Failures => _failures;

    /// <summary>Gets how long ago the call first failed.</summary>
    public TimeSpan FailingFor => _failures == 0 ? TimeSpan.Zero : engine.Time.GetElapsedTime(_firstFailure);

    /// <summary>Starts an attempt of the call: while Claude's unavailability is waited for
    /// (<see cref="AgentPgOptions.ModelUnavailableTimeout"/> not zero), the SDK returns an error answer at once instead of
    /// retrying it (and obeying its <c>retry-after</c> however long) and this policy reads the answer's retry headers; with
    /// the timeout zero the SDK retries as it always did.</summary>
    /// <returns>The attempt's scope; dispose it when the call returns or throws.</returns>
    public ServerRetryAdvice.Scope Attempt()
    {
        _advice.Clear();
        return ServerRetryAdvice.Begin(engine.Options.ModelUnavailableTimeout == TimeSpan.Zero ? null : _advice);
    }

    /// <summary>Classifies a failed attempt as <see cref="Classify"/> does, and as the server's <c>x-should-retry</c> says
    /// when it answered with one: <c>false</c> makes the failure permanent, <c>true</c> makes an error status one to wait out.</summary>
    /// <param name="exception">The failure.</param>
    /// <param name="madeWithoutToken">As for <see cref="Classify"/>.</param>
    public ModelFailureKind? KindOf(Exception exception, bool madeWithoutToken = false)
    {
        var kind = Classify(exception, madeWithoutToken);
        if (exception is AnthropicApiException && _advice.ShouldRetry is { } retry)
        {
            return retry ? ModelFailureKind.Unavailable : ModelFailureKind.Permanent;
        }

        return kind;
    }

    /// <summary>Classifies a failed call; <see langword="null"/> for an exception that is no failure of Claude's (a bug, a
    /// cancellation of the caller).</summary>
    /// <param name="exception">The failure.</param>
    /// <param name="madeWithoutToken">Whether the call was made with <see cref="CancellationToken.None"/>, so that any
    /// cancellation is a timeout.</param>
    public static ModelFailureKind? Classify(Exception exception, bool madeWithoutToken = false) => exception switch
    {
        AnthropicApiException api => (int)api.StatusCode is 408 or 409 or 429 or >= 500 ? ModelFailureKind.Unavailable : ModelFailureKind.Permanent,
        AnthropicSseException sse => sse.Type?.Raw() is "overloaded_error" or "rate_limit_error" or "api_error"
            ? ModelFailureKind.Unavailable
            : ModelFailureKind.Broken,
        _ when IsUnreachable(exception) => ModelFailureKind.Unavailable,
        AnthropicException or IOException or HttpRequestException => ModelFailureKind.Broken,
        // The SDK's or HttpClient's own timeout; any cancellation when the call was made without a token.
        OperationCanceledException { InnerException: TimeoutException } => ModelFailureKind.Broken,
        OperationCanceledException when madeWithoutToken => ModelFailureKind.Broken,
        _ => null,
    };

    /// <summary>Counts a failure of the call and decides what comes next.</summary>
    /// <param name="exception">The failure.</param>
    /// <param name="kind">Its kind (<see cref="KindOf"/>).</param>
    /// <returns>How long to wait before the next attempt, or <see langword="null"/> when the call fails now.</returns>
    public TimeSpan? OnFailure(Exception exception, ModelFailureKind kind)
    {
        if (_failures++ == 0)
        {
            _firstFailure = engine.Time.GetTimestamp();
        }

        var limit = engine.Options.ModelUnavailableTimeout;
        if (kind == ModelFailureKind.Unavailable && limit != TimeSpan.Zero)
        {
            var failingFor = FailingFor;
            if (limit != Timeout.InfiniteTimeSpan && failingFor >= limit)
            {
                return null;
            }

            var wait = UnavailableWait(engine.Options, _waits, failingFor, exception is AnthropicApiException ? _advice.RetryAfter : null);
            _waits++;
            return wait;
        }

        // A broken answer, or Claude unavailable inside a stream when it is not waited for: a few quick retries. An HTTP error
        // status has had the SDK's retries already, and a refused request fails the same way again.
        if (kind == ModelFailureKind.Permanent || exception is AnthropicApiException || ++_quickRetries > engine.Options.MaxModelRetries)
        {
            return null;
        }

        return TimeSpan.FromMilliseconds(250 * _quickRetries);
    }

    /// <summary>The wait before the next attempt of a call that Claude is unavailable for (the timeout not zero, and not
    /// passed): 1 s doubling with each wait to a minute, jittered to 50–100 %, never more than a quarter of
    /// <see cref="RunRescueOptions.Timeout"/>; the server's retry-after is a floor under that cap; the last attempt comes when
    /// <see cref="AgentPgOptions.ModelUnavailableTimeout"/> is up. The same schedule for a stream, a batch's creation and a
    /// batch result errored with Claude unavailable (<see cref="Workers.BatchPoller"/>).</summary>
    /// <param name="options">The client's options.</param>
    /// <param name="waits">How many waits came before this one.</param>
    /// <param name="failingFor">How long the call has been failing.</param>
    /// <param name="retryAfter">The server's retry-after, if it said one.</param>
    public static TimeSpan UnavailableWait(AgentPgOptions options, int waits, TimeSpan failingFor, TimeSpan? retryAfter)
    {
        var limit = options.ModelUnavailableTimeout;
        var quarterOfRescue = options.RunRescue.Timeout.Ticks / 4;
        var longest = Math.Min(s_longestWait.Ticks, quarterOfRescue);
        var wait = TimeSpan.FromTicks(Math.Min(longest, s_firstWait.Ticks << Math.Clamp(waits, 0, 16)));
        wait *= 0.5 + (Random.Shared.NextDouble() / 2);
        if (retryAfter is { } floor && floor > wait)
        {
            // The server's retry-after is a floor, but never so long that the rescue takes the waiting run: the next
            // attempt (or the next wait's progress mark) comes within a quarter of RunRescue.Timeout.
            wait = TimeSpan.FromTicks(Math.Min(floor.Ticks, quarterOfRescue));
        }

        if (limit != Timeout.InfiniteTimeSpan && failingFor + wait > limit)
        {
            // The last attempt comes when the time is up, not a whole backoff later.
            wait = limit - failingFor;
        }

        return wait;
    }

    /// <summary>Announces a wait of a run's model call: log event 2009, and a <see cref="ModelUnavailableEvent"/> for the run's
    /// watchers.</summary>
    /// <param name="run">The run (held by this instance).</param>
    /// <param name="iterationNumber">The iteration whose call waits.</param>
    /// <param name="exception">The failure.</param>
    /// <param name="wait">How long the run waits.</param>
    /// <param name="cancellationToken">The run's token.</param>
    public void AnnounceWait(Run run, int iterationNumber, Exception exception, TimeSpan wait, CancellationToken cancellationToken)
        => AnnounceWait(engine, run, iterationNumber, Error(exception), wait, FailingFor, cancellationToken);

    /// <summary>Announces a wait of a run's model call: log event 2009, and a <see cref="ModelUnavailableEvent"/> for the run's
    /// watchers.</summary>
    /// <param name="engine">The engine.</param>
    /// <param name="run">The run (held by this instance).</param>
    /// <param name="iterationNumber">The iteration whose call waits.</param>
    /// <param name="error">The failure, described (<see cref="Error"/>).</param>
    /// <param name="wait">How long the run waits.</param>
    /// <param name="failingFor">How long the call has been failing.</param>
    /// <param name="cancellationToken">The run's token.</param>
    public static void AnnounceWait(Engine engine, Run run, int iterationNumber, string error, TimeSpan wait, TimeSpan failingFor,
        CancellationToken cancellationToken)
    {
        Diagnostics.Log.ModelUnavailable(engine.Logger, run.Id, error, Durations.Format(wait), Durations.Format(failingFor));
        // Not awaited: the event's write waits for the root's events head (a watcher's back-fill, a delta write), and the wait
        // and the next attempt must not wait for it (best effort, as the deltas are).
        _ = engine.Deltas.ModelUnavailableAsync(run, iterationNumber, error, wait, failingFor, cancellationToken);
    }

    /// <summary>Waits before the next attempt of a run's call that failed because Claude is unavailable (a summary of the
    /// run's automatic compaction), logging the wait (event 2009) and reporting the run's progress; returns
    /// <see langword="false"/> when this policy does not apply (another failure, <see cref="AgentPgOptions.ModelUnavailableTimeout"/>
    /// zero): the caller fails the call as it would without it.</summary>
    /// <param name="what">What failed, for the run's error.</param>
    /// <param name="exception">The failure.</param>
    /// <param name="claimed">The run the call is made for.</param>
    /// <param name="reportProgress">Records the run's progress.</param>
    /// <param name="cancellationToken">The run's token: a cancel or the shutdown's deadline ends the wait.</param>
    /// <exception cref="RunFailureException"><c>model_error</c> when Claude stayed unavailable for longer than the timeout.</exception>
    public async Task<bool> WaitOutAsync(string what, Exception exception, ClaimedRun claimed, Action? reportProgress, CancellationToken cancellationToken)
    {
        if (engine.Options.ModelUnavailableTimeout == TimeSpan.Zero || cancellationToken.IsCancellationRequested
            || KindOf(exception) != ModelFailureKind.Unavailable)
        {
            return false;
        }

        if (OnFailure(exception, ModelFailureKind.Unavailable) is not { } wait)
        {
            var error = Error(exception);
            throw new RunFailureException(ErrorTypes.ModelError, Describe(what, ModelFailureKind.Unavailable, error, error), exception);
        }

        reportProgress?.Invoke();
        AnnounceWait(claimed.Run, claimed.Iteration, exception, wait, cancellationToken);
        await WaitAsync(claimed.Run, wait, cancellationToken).ConfigureAwait(false);
        return true;
    }

    /// <summary>Waits before the next attempt of a run's call, then checks that this instance still holds the run: a run
    /// rescued by another instance or cancelled while it waited (a cancel whose notification did not arrive) makes no request
    /// to Claude whose answer would be thrown away at its next fenced write.</summary>
    /// <param name="run">The run (held by this instance when the wait began).</param>
    /// <param name="wait">How long to wait.</param>
    /// <param name="cancellationToken">The run's token: a cancel or the shutdown's deadline ends the wait.</param>
    /// <exception cref="PostgresException">SQLSTATE AP001 (<c>agentpg_claim_lost</c>) when the run is no longer this
    /// instance's under its claim epoch, or final: the work stops as at a fence.</exception>
    public async Task WaitAsync(Run run, TimeSpan wait, CancellationToken cancellationToken)
    {
        await Task.Delay(wait, engine.Time, cancellationToken).ConfigureAwait(false);
        // One read by primary key, only after a wait: a call that did not wait pays nothing for it.
        await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                engine.Sql.Runs.AddStillClaimed(batch, run, engine.InstanceId);
                await engine.ExecuteNonQueryAsync(batch, ct).ConfigureAwait(false);
            }
        }, engine.Time, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Words the end of a call that is not tried again, for the run's error (never the API key).</summary>
    /// <param name="what">What failed, for example "Claude's streamed answer".</param>
    /// <param name="kind">The last failure's kind.</param>
    /// <param name="lastError">The last failure, described.</param>
    /// <param name="onlyFailure">The error when the call failed once and was not tried again.</param>
    public string Describe(string what, ModelFailureKind kind, string lastError, string onlyFailure)
    {
        var options = engine.Options;
        if (kind == ModelFailureKind.Unavailable && options.ModelUnavailableTimeout != TimeSpan.Zero)
        {
            return $"{what} failed {_failures} times over {Durations.Format(FailingFor)}: Claude stayed unavailable for longer than " +
                   $"AgentPgOptions.ModelUnavailableTimeout ({Durations.Format(options.ModelUnavailableTimeout)}); last error: {lastError}";
        }

        return _failures > 1
            ? $"{what} failed {_failures} times (AgentPgOptions.MaxModelRetries = {options.MaxModelRetries}); last error: {lastError}"
            : onlyFailure;
    }

    /// <summary>Describes a failed call for the run's error and the logs: the API's error type and message, or the transport's
    /// messages (never the API key).</summary>
    public static string Error(Exception exception)
    {
        switch (exception)
        {
            case AnthropicApiException api:
                return $"Claude API error {(int)api.StatusCode} {api.Type?.Raw() ?? "error"}: {api.ApiMessage ?? "(no message)"}";
            case AnthropicSseException sse:
                return $"{sse.Type?.Raw() ?? "error"}: {sse.ApiMessage}";
        }

        // Transport errors wrap the useful part ("Connection refused (api.anthropic.com:443)").
        var parts = new List<string>();
        for (var e = exception; e is not null && parts.Count < 4; e = e.InnerException)
        {
            if (!string.IsNullOrWhiteSpace(e.Message) && !parts.Contains(e.Message))
            {
                parts.Add(e.Message);
            }
        }

        return string.Join(" ← ", parts);
    }

    private static bool IsUnreachable(Exception exception)
    {
        // The connection to Claude cannot be made at all (refused, no route, a name that does not resolve): nothing was sent.
        for (var e = exception; e is not null; e = e.InnerException)
        {
            if (e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError or HttpRequestError.NameResolutionError or HttpRequestError.ProxyTunnelError })
            {
                return true;
            }
        }

        return false;
    }
}
