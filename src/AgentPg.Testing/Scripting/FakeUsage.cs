namespace AgentPg.Testing;

/// <summary>
/// Explicit token counts for a <see cref="FakeReply"/>. Every count left <see langword="null"/> is estimated by the server:
/// input from the request (UTF-8 bytes / 4, rounded up, per block), cache counts from its prompt cache, output from the reply.
/// </summary>
public sealed record FakeUsage
{
    /// <summary>The <c>input_tokens</c> to report (the uncached input).</summary>
    public long? InputTokens { get; init; }

    /// <summary>The <c>output_tokens</c> to report.</summary>
    public long? OutputTokens { get; init; }

    /// <summary>The <c>cache_creation_input_tokens</c> to report.</summary>
    public long? CacheCreationInputTokens { get; init; }

    /// <summary>The <c>cache_read_input_tokens</c> to report.</summary>
    public long? CacheReadInputTokens { get; init; }

    /// <summary>Of <see cref="CacheCreationInputTokens"/>, the tokens to report as written with a 1-hour lifetime
    /// (<c>cache_creation.ephemeral_1h_input_tokens</c>); the rest are reported as 5-minute writes. Default 0.</summary>
    public long? CacheCreation1hInputTokens { get; init; }

    /// <summary>The <c>server_tool_use.web_search_requests</c> to report; by default the answer's <c>server_tool_use</c> blocks
    /// named <c>web_search</c>. Usage carries <c>server_tool_use</c> only when it or <see cref="WebFetchRequests"/> is not 0.</summary>
    public long? WebSearchRequests { get; init; }

    /// <summary>The <c>server_tool_use.web_fetch_requests</c> to report; by default the answer's <c>server_tool_use</c> blocks
    /// named <c>web_fetch</c>.</summary>
    public long? WebFetchRequests { get; init; }
}
