namespace AgentPg;

/// <summary>Token usage of one or more model calls.</summary>
public sealed record Usage
{
    /// <summary>An empty usage.</summary>
    public static readonly Usage Zero = new();

    /// <summary>Gets the input tokens that were not read from or written to the prompt cache.</summary>
    public long InputTokens { get; init; }

    /// <summary>Gets the generated tokens.</summary>
    public long OutputTokens { get; init; }

    /// <summary>Gets the input tokens written to the prompt cache.</summary>
    public long CacheCreationInputTokens { get; init; }

    /// <summary>Gets the input tokens read from the prompt cache.</summary>
    public long CacheReadInputTokens { get; init; }

    // Of CacheCreationInputTokens, those written with a 1-hour lifetime (usage.cache_creation.ephemeral_1h_input_tokens): stored
    // per iteration for GetUsageAsync's cost. Internal: the runs' totals (Run.Usage) do not keep the split.
    internal long CacheCreation1hInputTokens { get; init; }

    // Server tool uses Claude bills per use (usage.server_tool_use): stored per iteration (Iteration.ServerToolUse) for
    // GetUsageAsync's cost; internal for the same reason.
    internal long WebSearchRequests { get; init; }

    internal long WebFetchRequests { get; init; }

    /// <summary>Gets input plus output tokens (cache tokens excluded).</summary>
    public long TotalTokens => InputTokens + OutputTokens;

    /// <summary>Adds two usages.</summary>
    /// <param name="left">The first usage.</param>
    /// <param name="right">The second usage.</param>
    /// <returns>The sum of every counter.</returns>
    public static Usage operator +(Usage left, Usage right)
    {
        ArgumentNullException.ThrowIfNull(left);
        ArgumentNullException.ThrowIfNull(right);
        return new Usage
        {
            InputTokens = left.InputTokens + right.InputTokens,
            OutputTokens = left.OutputTokens + right.OutputTokens,
            CacheCreationInputTokens = left.CacheCreationInputTokens + right.CacheCreationInputTokens,
            CacheReadInputTokens = left.CacheReadInputTokens + right.CacheReadInputTokens,
            CacheCreation1hInputTokens = left.CacheCreation1hInputTokens + right.CacheCreation1hInputTokens,
            WebSearchRequests = left.WebSearchRequests + right.WebSearchRequests,
            WebFetchRequests = left.WebFetchRequests + right.WebFetchRequests,
        };
    }

    /// <summary>Adds another usage to this one.</summary>
    /// <param name="other">The usage to add.</param>
    /// <returns>The sum of every counter.</returns>
    public Usage Add(Usage other) => this + other;
}

/// <summary>The server tool uses Claude bills per use, of one model call (<see cref="Iteration.ServerToolUse"/>; the answer's
/// <c>usage.server_tool_use</c>).</summary>
public sealed record ServerToolUsage
{
    /// <summary>No server tool use.</summary>
    public static readonly ServerToolUsage None = new();

    /// <summary>Gets the web searches Claude ran (billed per search, on top of tokens; see <see cref="ModelPrice.WebSearchPerThousand"/>).</summary>
    public long WebSearchRequests { get; init; }

    /// <summary>Gets the pages Claude fetched with web fetch (no charge per fetch: the fetched content is billed as input tokens).</summary>
    public long WebFetchRequests { get; init; }
}
