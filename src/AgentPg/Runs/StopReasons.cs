namespace AgentPg.Runs;

/// <summary>The stop_reason values of Claude's responses the engine acts on.</summary>
internal static class StopReasons
{
    public const string EndTurn = "end_turn";
    public const string ToolUse = "tool_use";
    public const string MaxTokens = "max_tokens";
    public const string PauseTurn = "pause_turn";
    public const string ModelContextWindowExceeded = "model_context_window_exceeded";
    public const string Refusal = "refusal";
}
