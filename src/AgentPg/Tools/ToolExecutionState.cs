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

    /// <summary>Waiting for a person to approve or reject it (<see cref="AgentDefinition.ToolsRequiringApproval"/>); no worker
    /// claims it until <see cref="AgentPgClient.ApproveToolCallAsync(Guid, System.Text.Json.JsonElement?, string?, CancellationToken)"/>
    /// or <see cref="AgentPgClient.RejectToolCallAsync(Guid, string, CancellationToken)"/>.</summary>
    AwaitingApproval,
}
