namespace AgentPg.Runs;

/// <summary>Why an iteration was started (agentpg_iterations.trigger_type; the table's CHECK lists the same values).</summary>
internal static class TriggerTypes
{
    /// <summary>The run's first iteration: the prompt.</summary>
    public const string UserPrompt = "user_prompt";

    /// <summary>The tool results of the previous iteration are ready.</summary>
    public const string ToolResults = "tool_results";

    /// <summary>The previous response was cut short (pause_turn, a truncated tool call) and Claude continues it.</summary>
    public const string Continuation = "continuation";
}
