namespace AgentPg;

/// <summary>The processing status of a message batch, as Claude reports it.</summary>
public enum BatchStatus
{
    /// <summary>The batch is being processed.</summary>
    InProgress,

    /// <summary>Cancellation was requested and is in progress.</summary>
    Canceling,

    /// <summary>Processing ended; results are available.</summary>
    Ended,
}
