namespace AgentPg;

/// <summary>How a run calls Claude.</summary>
public enum RunMode
{
    /// <summary>Through the Message Batches API: half the price, minutes to hours of latency (<c>Run*</c> methods).</summary>
    Batch,

    /// <summary>Through the streaming Messages API: answers in seconds (<c>RunFast*</c> methods).</summary>
    Streaming,
}
