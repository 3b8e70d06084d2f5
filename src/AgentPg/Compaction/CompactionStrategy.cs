namespace AgentPg;

/// <summary>How a session's conversation is compacted.</summary>
public enum CompactionStrategy
{
    /// <summary>First replace old tool outputs with a placeholder; summarise only when that is not enough to reach
    /// <see cref="CompactionOptions.TargetTokens"/>.</summary>
    Hybrid,

    /// <summary>Summarise the old part of the conversation.</summary>
    Summarization,
}
