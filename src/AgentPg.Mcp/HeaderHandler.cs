namespace AgentPg.Mcp;

/// <summary>Adds <see cref="McpServerOptions.Headers"/> and then <see cref="McpServerOptions.HeaderProvider"/>'s headers
/// (which replace static ones of the same name) to every request to a Streamable HTTP server, and records the
/// <c>Retry-After</c> of a 429 answer for the tool call that sent the request (<see cref="RateLimitCapture"/>).</summary>
internal sealed class HeaderHandler(
    IReadOnlyDictionary<string, string> headers,
    Func<CancellationToken, ValueTask<IReadOnlyDictionary<string, string>>>? provider) : DelegatingHandler
{
    protected override async Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        foreach (var (name, value) in headers)
        {
            request.Headers.Remove(name);
            request.Headers.TryAddWithoutValidation(name, value);
        }

        if (provider is not null)
        {
            foreach (var (name, value) in await provider(cancellationToken).ConfigureAwait(false))
            {
                request.Headers.Remove(name);
                request.Headers.TryAddWithoutValidation(name, value);
            }
        }

        var response = await base.SendAsync(request, cancellationToken).ConfigureAwait(false);
        if (response.StatusCode == System.Net.HttpStatusCode.TooManyRequests && RateLimitCapture.Current is { } capture)
        {
            capture.RetryAfter = response.Headers.RetryAfter;
        }

        return response;
    }
}
