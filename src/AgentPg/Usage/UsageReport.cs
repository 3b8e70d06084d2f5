namespace AgentPg;

/// <summary>Token usage and cost, summed by <see cref="AgentPgClient.GetUsageAsync"/>.</summary>
public sealed record UsageReport
{
    /// <summary>Gets the query's <see cref="UsageQuery.Since"/>.</summary>
    public DateTimeOffset? Since { get; init; }

    /// <summary>Gets the query's <see cref="UsageQuery.Until"/>.</summary>
    public DateTimeOffset? Until { get; init; }

    /// <summary>Gets how the rows are grouped (empty: one row).</summary>
    public IReadOnlyList<UsageGrouping> GroupBy { get; init; } = [];

    /// <summary>Gets one row per group that used tokens, ordered by the grouping keys (days oldest first, names and values in
    /// ordinal order, a missing value last). Without grouping, one row: the total (or none when nothing matched).</summary>
    public IReadOnlyList<UsageRow> Rows { get; init; } = [];

    /// <summary>Gets every call that matched, in one row (its grouping properties are <see langword="null"/>).</summary>
    public UsageRow Total { get; init; } = new();

    /// <summary>Gets the models that were used and have no price, in ordinal order (a call whose model is unknown is listed as
    /// an empty string). The cost of every row with tokens of one of them is <see langword="null"/>.</summary>
    public IReadOnlyList<string> UnpricedModels { get; init; } = [];
}

/// <summary>The tokens, calls and cost of one group of <see cref="UsageReport.Rows"/>. The grouping properties not asked for
/// are <see langword="null"/>.</summary>
public sealed record UsageRow
{
    /// <summary>Gets the UTC day the calls completed (grouping <see cref="UsageGroupKind.Day"/>).</summary>
    public DateOnly? Day { get; init; }

    /// <summary>Gets the agent (grouping <see cref="UsageGroupKind.Agent"/>; <see langword="null"/> in the group of compaction
    /// summaries, which belong to no agent).</summary>
    public Guid? AgentId { get; init; }

    /// <summary>Gets the agent's name now (grouping <see cref="UsageGroupKind.Agent"/>).</summary>
    public string? AgentName { get; init; }

    /// <summary>Gets the model the requests named (grouping <see cref="UsageGroupKind.Model"/>).</summary>
    public string? Model { get; init; }

    /// <summary>Gets the run mode (grouping <see cref="UsageGroupKind.RunMode"/>; <see langword="null"/> for compaction summaries).</summary>
    public RunMode? Mode { get; init; }

    /// <summary>Gets runs' calls or compaction summaries (grouping <see cref="UsageGroupKind.Source"/>).</summary>
    public UsageSource? Source { get; init; }

    /// <summary>Gets the value (as text) of each metadata key grouped by (<see cref="UsageGroupKind.SessionMetadata"/>);
    /// empty without such a grouping.</summary>
    public IReadOnlyDictionary<string, string?> SessionMetadata { get; init; } = new Dictionary<string, string?>();

    /// <summary>Gets the base input tokens (neither read from nor written to the prompt cache).</summary>
    public long InputTokens { get; init; }

    /// <summary>Gets the output tokens.</summary>
    public long OutputTokens { get; init; }

    /// <summary>Gets the input tokens written to the prompt cache, of both lifetimes.</summary>
    public long CacheCreationInputTokens { get; init; }

    /// <summary>Gets the part of <see cref="CacheCreationInputTokens"/> written with a 1-hour lifetime.</summary>
    public long CacheCreation1hInputTokens { get; init; }

    /// <summary>Gets the input tokens read from the prompt cache.</summary>
    public long CacheReadInputTokens { get; init; }

    /// <summary>Gets the web searches Claude ran in the calls (its web search server tool; <c>usage.server_tool_use</c>), billed
    /// per search on top of tokens.</summary>
    public long WebSearchRequests { get; init; }

    /// <summary>Gets the pages Claude fetched in the calls (its web fetch server tool); not billed per fetch: the pages' content
    /// is billed as input tokens.</summary>
    public long WebFetchRequests { get; init; }

    /// <summary>Gets the model calls: runs' iterations and compaction summaries that Claude billed (an iteration that failed
    /// before Claude billed anything is no call).</summary>
    public long ModelCalls { get; init; }

    /// <summary>Gets the part of <see cref="ModelCalls"/> sent through the Message Batches API.</summary>
    public long BatchModelCalls { get; init; }

    /// <summary>Gets the runs that made at least one of the calls (delegated runs count as runs of their own).</summary>
    public long Runs { get; init; }

    /// <summary>Gets what the calls cost in US dollars, as billed: cache writes at their lifetime's price, batched calls
    /// with the batch discount, web searches at <see cref="ModelPrice.WebSearchPerThousand"/>. <see langword="null"/> when a
    /// model of the group has no price.</summary>
    public decimal? Cost { get; init; }

    /// <summary>Gets what the same calls would have cost without prompt caching and without the Message Batches API: every
    /// input token (base, cache write, cache read) at the input price, no discount, and the web searches. <see langword="null"/>
    /// when a model of the group has no price.</summary>
    public decimal? CostWithoutDiscounts { get; init; }
}
