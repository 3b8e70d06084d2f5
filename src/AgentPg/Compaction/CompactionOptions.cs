namespace AgentPg;

/// <summary>How sessions are compacted: by <see cref="AgentPgOptions.AutoCompaction"/>, or on request with
/// <see cref="AgentPgClient.CompactAsync(Guid, CompactionOptions, CancellationToken)"/>.</summary>
/// <remarks>
/// <para>The conversation is split, from the newest message back, into a protected part (the newest
/// <see cref="ProtectedTokens"/> tokens and then the <see cref="PreserveLastN"/> messages before them), which is never
/// touched, and an older, compactable part. Messages marked preserved and the messages of a run that is still in progress
/// are kept too, and a tool call is never separated from its result.</para>
/// <para>Every property is validated (per field, with the fix) when the client is created or when <c>CompactAsync</c>
/// receives the options.</para>
/// </remarks>
public sealed class CompactionOptions
{
    /// <summary>Gets or sets the strategy.</summary>
    /// <value>The default value is <see cref="CompactionStrategy.Hybrid"/>.</value>
    public CompactionStrategy Strategy { get; set; } = CompactionStrategy.Hybrid;

    /// <summary>Gets or sets the share of <see cref="MaxTokensForModel"/> above which a session needs compaction.</summary>
    /// <value>The default value is 0.85. It must be greater than 0 and at most 1.</value>
    public double Trigger { get; set; } = 0.85;

    /// <summary>Gets or sets the size the hybrid strategy aims for: when pruning tool outputs alone brings the conversation
    /// to this many tokens or fewer, nothing is summarised.</summary>
    /// <value>The default value is 80 000. It must be less than <see cref="MaxTokensForModel"/>.</value>
    public int TargetTokens { get; set; } = 80_000;

    /// <summary>Gets or sets how many messages before the protected tokens are kept as they are.</summary>
    /// <value>The default value is 10.</value>
    public int PreserveLastN { get; set; } = 10;

    /// <summary>Gets or sets how many of the newest tokens are never compacted.</summary>
    /// <value>The default value is 40 000.</value>
    public int ProtectedTokens { get; set; } = 40_000;

    /// <summary>Gets or sets the model that writes summaries and counts tokens.</summary>
    /// <value>The default value is <c>claude-haiku-4-5</c>.</value>
    public string SummarizerModel { get; set; } = "claude-haiku-4-5";

    /// <summary>Gets or sets the longest summary, in tokens.</summary>
    /// <value>The default value is 4 096.</value>
    public int SummarizerMaxTokens { get; set; } = 4096;

    /// <summary>Gets or sets the context window the trigger is a share of.</summary>
    /// <value>The default value is 200 000 (Claude's standard window).</value>
    public int MaxTokensForModel { get; set; } = 200_000;

    /// <summary>Gets or sets whether the hybrid strategy keeps old tool outputs instead of pruning them first.</summary>
    /// <value>The default value is <see langword="false"/>.</value>
    public bool PreserveToolOutputs { get; set; }

    /// <summary>Gets or sets whether token counts come from Claude's <c>count_tokens</c> endpoint (free, but one request)
    /// rather than an estimate of four characters per token.</summary>
    /// <value>The default value is <see langword="true"/>. The estimate is used when the endpoint fails or no API key is set.</value>
    public bool UseTokenCountingApi { get; set; } = true;

    /// <summary>Gets the token count above which a session needs compaction.</summary>
    public int TriggerTokens => (int)(MaxTokensForModel * Trigger);

    /// <summary>Checks every property and returns one message per invalid property.</summary>
    /// <returns>An empty list when the options are valid.</returns>
    public IReadOnlyList<string> Validate() => Internal.CompactionOptionsValidator.Validate(this, "CompactionOptions.");

    internal CompactionOptions Clone() => (CompactionOptions)MemberwiseClone();
}
