namespace AgentPg;

/// <summary>What happens when a root run is created in a session that already has an active root run.</summary>
/// <remarks>A session processes one root run at a time; child runs of agent delegations are not affected.</remarks>
public enum ConcurrencyPolicy
{
    /// <summary>The new run waits in <see cref="RunState.Pending"/> until the earlier runs are terminal (the default).</summary>
    Queue,

    /// <summary>Creating the run throws <see cref="AgentPgException"/> with <see cref="AgentPgErrorCode.SessionBusy"/>.</summary>
    Reject,

    /// <summary>The active runs are cancelled, then the new run is queued.</summary>
    Interrupt,
}
