namespace AgentPg;

/// <summary>Identifies the kind of failure an <see cref="AgentPgException"/> reports.</summary>
/// <remarks>
/// One member per sentinel error of the reference implementation, plus the conditions this library adds.
/// Misuse of the API (a null argument, an invalid option) raises the usual BCL exceptions instead.
/// </remarks>
public enum AgentPgErrorCode
{
    /// <summary>The configuration is invalid.</summary>
    InvalidConfig,

    /// <summary>No session has the given id.</summary>
    SessionNotFound,

    /// <summary>No run has the given id.</summary>
    RunNotFound,

    /// <summary>No agent has the given id or name.</summary>
    AgentNotFound,

    /// <summary>No tool has the given name.</summary>
    ToolNotFound,

    /// <summary>No iteration has the given id.</summary>
    IterationNotFound,

    /// <summary>No tool execution has the given id.</summary>
    ToolExecutionNotFound,

    /// <summary>The agent is not registered on this client.</summary>
    AgentNotRegistered,

    /// <summary>The tool is not registered on this client.</summary>
    ToolNotRegistered,

    /// <summary>The operation needs a started client (<see cref="AgentPgClient.StartAsync"/>).</summary>
    ClientNotStarted,

    /// <summary>The client was already started. Declared for parity with the reference; calling
    /// <see cref="AgentPgClient.StartAsync"/> twice is misuse and throws <see cref="InvalidOperationException"/>.</summary>
    ClientAlreadyStarted,

    /// <summary>The client is stopping.</summary>
    ClientStopping,

    /// <summary>The run is not in a state that allows the operation.</summary>
    InvalidStateTransition,

    /// <summary>The run has already reached a terminal state.</summary>
    RunAlreadyFinalized,

    /// <summary>The run was cancelled.</summary>
    RunCancelled,

    /// <summary>The run cannot be cancelled in its current state.</summary>
    RunNotCancellable,

    /// <summary>A tool's input schema is invalid.</summary>
    InvalidToolSchema,

    /// <summary>A tool execution failed.</summary>
    ToolExecutionFailed,

    /// <summary>Claude's Message Batches API returned an error.</summary>
    BatchApiError,

    /// <summary>A message batch expired before it was processed.</summary>
    BatchExpired,

    /// <summary>A message batch failed.</summary>
    BatchFailed,

    /// <summary>A database operation failed.</summary>
    StorageError,

    /// <summary>The instance lost its connection or was evicted.</summary>
    InstanceDisconnected,

    /// <summary>No instance has the given id.</summary>
    InstanceNotFound,

    /// <summary>Compacting a session's context failed (the summariser failed, or another compaction of the session committed
    /// first); nothing was changed.</summary>
    CompactionFailed,

    /// <summary>A compaction was asked for but the session has nothing that may be compacted (everything is protected, kept, or
    /// part of a run in progress); nothing was changed.</summary>
    NothingToCompact,

    /// <summary>No compaction event has the given id.</summary>
    CompactionNotFound,

    /// <summary>The session already has an active root run and the run was created with <see cref="ConcurrencyPolicy.Reject"/>; or
    /// <see cref="AgentPgClient.DeleteSessionAsync(Guid, CancellationToken)"/> found a run that is not finished in the session or
    /// one of its child sessions.</summary>
    SessionBusy,

    /// <summary>The agent cannot be deleted because runs or tool executions reference it.</summary>
    AgentInUse,

    /// <summary>An idempotency key was reused for a different run request: another agent, prompt, mode, variables or instructions.</summary>
    IdempotencyConflict,

    /// <summary>The database schema is missing or at a version this library does not know.</summary>
    SchemaVersionMismatch,

    /// <summary>The run failed; the exception message carries the run's error.</summary>
    RunFailed,

    /// <summary>An agent with the same name and metadata already exists.</summary>
    AgentAlreadyExists,

    /// <summary>The tool execution is not waiting for approval: it was decided already (approved, rejected, timed out), its run
    /// was cancelled, or it never needed approval; the message says which.</summary>
    ApprovalNotPending,

    /// <summary>The run cannot be regenerated: a compaction still in place summarised some of its messages, so the summary holds
    /// the attempt a regeneration would discard. Restore the session's compactions back to that one
    /// (<see cref="AgentPgClient.RestoreCompactionAsync(Guid, CancellationToken)"/>, newest first), or start a new run.</summary>
    RunCompacted,
}
