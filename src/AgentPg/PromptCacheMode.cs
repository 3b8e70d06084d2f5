namespace AgentPg;

/// <summary>Whether the engine places Claude prompt-cache breakpoints on its requests.</summary>
public enum PromptCacheMode
{
    /// <summary>Breakpoints after the tools and system prompt and at the end of the conversation (see
    /// <see cref="AgentPgOptions.PromptCaching"/>).</summary>
    Automatic,

    /// <summary>No breakpoints: every request pays full input price.</summary>
    Off,
}
