namespace AgentPg;

/// <summary>The author of a message.</summary>
public enum MessageRole
{
    /// <summary>The user (prompts and tool results).</summary>
    User,

    /// <summary>Claude.</summary>
    Assistant,

    /// <summary>System text stored in the conversation; sent to Claude as a user turn.</summary>
    System,
}
