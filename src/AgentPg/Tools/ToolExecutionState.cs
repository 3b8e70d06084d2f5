namespace AgentPg;

/// <summary>The state of one tool execution.</summary>
public enum ToolExecutionState
{
    /// <summary>Waiting for a tool worker (also between retries and after a snooze).</summary>
    Pending,

    /// <summary>A tool worker is executing it.</summary>
    Running,

    /// <summary>Finished with an output.</summary>
    Completed,

    /// <summary>Finished with an error, reported to Claude as an <c>is_error</c> tool result.</summary>
    Failed,

    /// <summary>Not executed because its run was cancelled.</summary>
    Skipped,
}
