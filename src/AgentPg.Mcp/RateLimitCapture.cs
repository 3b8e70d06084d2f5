using System.Net.Http.Headers;

namespace AgentPg.Mcp;

/// <summary>The <c>Retry-After</c> of a 429 answer to one tool call. The SDK's <see cref="HttpRequestException"/> carries
/// the status but not the response's headers, so <see cref="HeaderHandler"/> (which sees every response) records it here
/// for the call under way on this async flow.</summary>
internal sealed class RateLimitCapture
{
    private static readonly AsyncLocal<RateLimitCapture?> s_current = new();

    /// <summary>Gets the capture of the call under way on this async flow, if any.</summary>
    public static RateLimitCapture? Current => s_current.Value;

    /// <summary>Gets or sets the server's <c>Retry-After</c> header of a 429 answer, or <see langword="null"/> when it sent none.</summary>
    public RetryConditionHeaderValue? RetryAfter { get; set; }

    /// <summary>Starts capturing for the calling async method (the value reverts when it returns).</summary>
    /// <returns>The capture.</returns>
    public static RateLimitCapture Begin() => s_current.Value = new RateLimitCapture();
}
