namespace AgentPg;

/// <summary>The state of a run.</summary>
/// <remarks>The names map to the <c>agentpg_run_state</c> database enum in snake_case.</remarks>
public enum RunState
{
    /// <summary>Waiting for a worker to claim it.</summary>
    Pending,

    /// <summary>Claimed by a batch worker, which is submitting the iteration to the Message Batches API.</summary>
    BatchSubmitting,

    /// <summary>The batch was submitted and has not started processing.</summary>
    BatchPending,

    /// <summary>The batch is being processed by Claude.</summary>
    BatchProcessing,

    /// <summary>A worker is streaming Claude's answer.</summary>
    Streaming,

    /// <summary>Claude asked for tools; waiting for every tool execution of the iteration to finish.</summary>
    PendingTools,

    /// <summary>Reserved by the reference design; never entered.</summary>
    AwaitingInput,

    /// <summary>Finished with an answer.</summary>
    Completed,

    /// <summary>Cancelled (by the caller, or by a session interrupt).</summary>
    Cancelled,

    /// <summary>Finished with an error (<see cref="Run.ErrorMessage"/>).</summary>
    Failed,
}
