namespace AgentPg.Runs;

/// <summary>What the next iteration of a claimed run is, decided from the persisted outcome of the previous one, so the
/// decision survives a re-queue, a rescue, or another instance taking over.</summary>
/// <remarks>agentpg_claim_runs applies the same rule to the trigger of the iteration it starts: keep both in step.</remarks>
internal static class NextIteration
{
    /// <summary>The trigger of the next iteration and its max_tokens when it differs from the agent's (a truncated tool call
    /// doubles it).</summary>
    public static (string Trigger, int? MaxTokens) Decide(int currentIteration, PreviousIteration? previous)
    {
        if (currentIteration == 0 || previous is null)
        {
            return (currentIteration == 0 ? TriggerTypes.UserPrompt : TriggerTypes.ToolResults, null);
        }

        return previous switch
        {
            // Abandoned by a dead or stuck holder: do it again.
            { ErrorType: ErrorTypes.Abandoned } => (previous.TriggerType, previous.MaxTokens),
            { ErrorType: ErrorTypes.TruncatedToolUse } => (TriggerTypes.Continuation, previous.MaxTokens is { } m ? m * 2 : null),
            { StopReason: StopReasons.PauseTurn } => (TriggerTypes.Continuation, null),
            _ => (TriggerTypes.ToolResults, null),
        };
    }
}
