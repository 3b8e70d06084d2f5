namespace AgentPg;

/// <summary>What one model costs, in US dollars per million tokens, for <see cref="AgentPgClient.GetUsageAsync"/>'s cost: the
/// prices of Claude's pricing page (<c>https://platform.claude.com/docs/en/about-claude/pricing</c>) for the model.</summary>
/// <remarks>AgentPg ships no price table: prices change and differ between models (a cache read is not a tenth of the input
/// price for every model), so copy them from the pricing page and update them when it changes. Every price is checked when it is
/// set: a negative price, or a batch discount outside 0..1, throws <see cref="ArgumentOutOfRangeException"/>.</remarks>
public sealed record ModelPrice
{
    /// <summary>Creates the price of a model.</summary>
    /// <param name="inputPerMillionTokens">Base input tokens (the pricing page's "Base input tokens").</param>
    /// <param name="outputPerMillionTokens">Output tokens.</param>
    /// <param name="cacheWrite5mPerMillionTokens">Input tokens written to the prompt cache with a 5-minute lifetime ("5m cache writes").</param>
    /// <param name="cacheWrite1hPerMillionTokens">Input tokens written to the prompt cache with a 1-hour lifetime ("1h cache writes").</param>
    /// <param name="cacheReadPerMillionTokens">Input tokens read from the prompt cache ("Cache hits and refreshes").</param>
    /// <exception cref="ArgumentOutOfRangeException">A price is negative.</exception>
    public ModelPrice(decimal inputPerMillionTokens, decimal outputPerMillionTokens, decimal cacheWrite5mPerMillionTokens,
        decimal cacheWrite1hPerMillionTokens, decimal cacheReadPerMillionTokens)
    {
        InputPerMillionTokens = inputPerMillionTokens;
        OutputPerMillionTokens = outputPerMillionTokens;
        CacheWrite5mPerMillionTokens = cacheWrite5mPerMillionTokens;
        CacheWrite1hPerMillionTokens = cacheWrite1hPerMillionTokens;
        CacheReadPerMillionTokens = cacheReadPerMillionTokens;
    }

    /// <summary>Gets the price of a million base input tokens (neither read from nor written to the prompt cache).</summary>
    public decimal InputPerMillionTokens { get; init => field = NonNegative(value, nameof(InputPerMillionTokens)); }

    /// <summary>Gets the price of a million output tokens.</summary>
    public decimal OutputPerMillionTokens { get; init => field = NonNegative(value, nameof(OutputPerMillionTokens)); }

    /// <summary>Gets the price of a million input tokens written to the prompt cache with a 5-minute lifetime.</summary>
    public decimal CacheWrite5mPerMillionTokens { get; init => field = NonNegative(value, nameof(CacheWrite5mPerMillionTokens)); }

    /// <summary>Gets the price of a million input tokens written to the prompt cache with a 1-hour lifetime.</summary>
    public decimal CacheWrite1hPerMillionTokens { get; init => field = NonNegative(value, nameof(CacheWrite1hPerMillionTokens)); }

    /// <summary>Gets the price of a million input tokens read from the prompt cache.</summary>
    public decimal CacheReadPerMillionTokens { get; init => field = NonNegative(value, nameof(CacheReadPerMillionTokens)); }

    /// <summary>Gets the discount on every token of a request sent through the Message Batches API, as a fraction of the
    /// price (0.5 = half price).</summary>
    /// <value>The default value is 0.5, the Message Batches API's 50 % discount.</value>
    public decimal BatchDiscount
    {
        get;
        init => field = value is >= 0m and <= 1m
            ? value
            : throw new ArgumentOutOfRangeException(nameof(BatchDiscount), value, "ModelPrice.BatchDiscount is a fraction of the price from 0 to 1 (0.5 = half price).");
    }
        = 0.5m;

    /// <summary>Gets the price of a thousand web searches (Claude's web search server tool, billed per search on top of the
    /// tokens its results add to the input, batched or not). Web fetch has no such charge: a fetched page costs only the input
    /// tokens of its content. Code execution is billed by container time, which answers do not report: it is not priced.</summary>
    /// <value>The default value is 10: US$10 per 1 000 searches, the same for every model, as published on Claude's pricing page
    /// (<c>https://platform.claude.com/docs/en/about-claude/pricing</c>) and the web search tool's page
    /// (<c>https://platform.claude.com/docs/en/agents-and-tools/tool-use/web-search-tool</c>).</value>
    public decimal WebSearchPerThousand { get; init => field = NonNegative(value, nameof(WebSearchPerThousand)); } = 10m;

    private static decimal NonNegative(decimal value, string name)
        => value >= 0m ? value : throw new ArgumentOutOfRangeException(name, value, $"ModelPrice.{name} must not be negative (US dollars{(name == nameof(WebSearchPerThousand) ? " per thousand searches" : " per million tokens")}).");
}
