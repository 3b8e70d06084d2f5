namespace AgentPg;

/// <summary>Helpers for AgentPg's enums.</summary>
public static class AgentPgEnumExtensions
{
    /// <summary>Returns whether the run state is final: completed, cancelled or failed.</summary>
    /// <param name="state">The state.</param>
    /// <returns><see langword="true"/> for <see cref="RunState.Completed"/>, <see cref="RunState.Cancelled"/> and <see cref="RunState.Failed"/>.</returns>
    public static bool IsTerminal(this RunState state)
        => state is RunState.Completed or RunState.Cancelled or RunState.Failed;

    /// <summary>Returns whether the tool execution state is final: completed, failed or skipped.</summary>
    /// <param name="state">The state.</param>
    /// <returns><see langword="true"/> for <see cref="ToolExecutionState.Completed"/>, <see cref="ToolExecutionState.Failed"/> and <see cref="ToolExecutionState.Skipped"/>.</returns>
    public static bool IsTerminal(this ToolExecutionState state)
        => state is ToolExecutionState.Completed or ToolExecutionState.Failed or ToolExecutionState.Skipped;
}
