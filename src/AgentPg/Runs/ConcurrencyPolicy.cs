namespace AgentPg;

/// <summary>What happens when a root run is created in a session that already has an active root run.</summary>
/// <remarks>A session processes one root run at a time; child runs of agent delegations are not affected. Creating a run
/// locks the session row until the creating transaction commits, whatever the policy, so concurrent creators of one session
/// are applied one after the other (a <see cref="Queue"/> insert cannot slip past a <see cref="Reject"/> check). A run
/// created inside a caller's transaction therefore holds back other creators of that session until the caller commits.</remarks>
public enum ConcurrencyPolicy
{
    /// <summary>The new run waits in <see cref="RunState.Pending"/> until the earlier runs are terminal (the default).</summary>
    Queue,

    /// <summary>Creating the run throws <see cref="AgentPgException"/> with <see cref="AgentPgErrorCode.SessionBusy"/>.</summary>
    Reject,

    /// <summary>The active runs are cancelled, then the new run is queued.</summary>
    /// <remarks>A repeat with an <see cref="RunOptions.IdempotencyKey"/> already used in the session cancels nothing: it
    /// returns the first run's id, whether that run is still active or finished.</remarks>
    Interrupt,
}
