using System.Globalization;
using System.Net.Http;

namespace AgentPg.Claude;

/// <summary>What Claude's error answer to one model call said about trying it again: <c>retry-after-ms</c> /
/// <c>retry-after</c> and <c>x-should-retry</c>. The SDK's <see cref="Anthropic.Exceptions.AnthropicApiException"/> carries
/// neither header, so <see cref="ServerRetryAdviceHandler"/> (which sees every response) records them here for the call under
/// way on this async flow.</summary>
/// <remarks>While a call is advised, the handler also answers the SDK's own retry question with <c>x-should-retry: false</c>
/// on an error status, so the SDK returns the error at once and <see cref="Runs.ModelRetries"/> decides when to try again
/// (with the server's wait as a floor, capped so the run's worker reports progress, and cancellable). The SDK still retries
/// what has no answer (a connection error, its own timeout).</remarks>
internal sealed class ServerRetryAdvice
{
    private static readonly AsyncLocal<ServerRetryAdvice?> s_current = new();

    /// <summary>Gets the advice of the call under way on this async flow, if any.</summary>
    public static ServerRetryAdvice? Current => s_current.Value;

    /// <summary>Gets how long the server asked to wait before the next attempt, or <see langword="null"/> when it did not say.</summary>
    public TimeSpan? RetryAfter { get; private set; }

    /// <summary>Gets the server's <c>x-should-retry</c>, or <see langword="null"/> when it sent none.</summary>
    public bool? ShouldRetry { get; private set; }

    /// <summary>Advises the calls of the calling async method from now on (the value reverts when it returns, or with the
    /// returned scope).</summary>
    /// <returns>A scope that ends the advice.</returns>
    public static Scope Begin(ServerRetryAdvice? advice)
    {
        var previous = s_current.Value;
        s_current.Value = advice;
        return new Scope(previous);
    }

    /// <summary>Forgets the previous answer, before an attempt.</summary>
    public void Clear()
    {
        RetryAfter = null;
        ShouldRetry = null;
    }

    /// <summary>Reads the headers of an error answer.</summary>
    public void Read(HttpResponseMessage response, DateTimeOffset now)
    {
        var headers = response.Headers;
        ShouldRetry = headers.TryGetValues("x-should-retry", out var should) && should.FirstOrDefault() is { } value
            ? value.Equals("true", StringComparison.OrdinalIgnoreCase) ? true
            : value.Equals("false", StringComparison.OrdinalIgnoreCase) ? false : null
            : null;
        RetryAfter = null;
        if (headers.TryGetValues("retry-after-ms", out var ms)
            && double.TryParse(ms.FirstOrDefault(), NumberStyles.Float, CultureInfo.InvariantCulture, out var milliseconds)
            && double.IsFinite(milliseconds) && milliseconds >= 0)
        {
            RetryAfter = TimeSpan.FromMilliseconds(Math.Min(milliseconds, TimeSpan.MaxValue.TotalMilliseconds / 2));
        }
        else if (headers.TryGetValues("retry-after", out var after) && after.FirstOrDefault() is { } text)
        {
            if (double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) && double.IsFinite(seconds) && seconds >= 0)
            {
                RetryAfter = TimeSpan.FromSeconds(Math.Min(seconds, TimeSpan.MaxValue.TotalSeconds / 2));
            }
            else if (DateTimeOffset.TryParseExact(text, "r", CultureInfo.InvariantCulture, DateTimeStyles.AssumeUniversal, out var at))
            {
                RetryAfter = at > now ? at - now : TimeSpan.Zero;
            }
        }
    }

    /// <summary>Ends the advice of a <see cref="Begin"/>.</summary>
    public readonly struct Scope(ServerRetryAdvice? previous) : IDisposable
    {
        /// <inheritdoc/>
        public void Dispose() => s_current.Value = previous;
    }
}

/// <summary>Records the retry headers of Claude's error answers for the advised call (<see cref="ServerRetryAdvice"/>) and
/// tells the SDK not to retry them itself; leaves every other call and every success as they are.</summary>
internal sealed class ServerRetryAdviceHandler(TimeProvider time) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        var response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        if (!response.IsSuccessStatusCode && ServerRetryAdvice.Current is { } advice)
        {
            advice.Read(response, time.GetUtcNow());
            response.Headers.Remove("x-should-retry");
            response.Headers.TryAddWithoutValidation("x-should-retry", "false");
        }

        return response;
    }
}
