using Microsoft.Extensions.Logging;

namespace AgentPg.Diagnostics;

/// <summary>Every log message of AgentPg, with stable event ids.</summary>
internal static partial class Log
{
    [LoggerMessage(1001, LogLevel.Information, "AgentPg instance {InstanceId} ({InstanceName}) started on schema {Schema} with {ToolCount} tools")]
    public static partial void ClientStarted(ILogger logger, string instanceId, string instanceName, string schema, int toolCount);

    [LoggerMessage(1002, LogLevel.Information, "AgentPg instance {InstanceId} stopped; released {ReleasedCount} runs and tool executions")]
    public static partial void ClientStopped(ILogger logger, string instanceId, int releasedCount);

    [LoggerMessage(1003, LogLevel.Information, "Schema {Schema} migrated to version {Version} on start")]
    public static partial void MigratedOnStart(ILogger logger, string schema, int version);

    [LoggerMessage(1004, LogLevel.Error, "Syncing tool {ToolName} to the database failed")]
    public static partial void ToolSyncFailed(ILogger logger, Exception exception, string toolName);

    [LoggerMessage(1005, LogLevel.Warning, "Stopping instance {InstanceId} did not complete cleanly")]
    public static partial void StopFailed(ILogger logger, Exception exception, string instanceId);

    [LoggerMessage(1006, LogLevel.Error, "{Attachment} failed to follow the client's start, stop or disposal")]
    public static partial void AttachmentFailed(ILogger logger, Exception exception, string attachment);

    [LoggerMessage(1007, LogLevel.Information, "Session {SessionId} deleted, with its runs, messages and child sessions")]
    public static partial void SessionDeleted(ILogger logger, Guid sessionId);

    [LoggerMessage(1101, LogLevel.Information, "LISTEN connection re-established (backend {ProcessId}); running a catch-up poll")]
    public static partial void ListenerReconnected(ILogger logger, int processId);

    [LoggerMessage(1102, LogLevel.Warning, "LISTEN connection lost; reconnecting in {DelayMs} ms (polling continues meanwhile)")]
    public static partial void ListenerLost(ILogger logger, Exception exception, double delayMs);

    [LoggerMessage(1103, LogLevel.Error, "Handling a notification on {Channel} failed")]
    public static partial void NotificationHandlerFailed(ILogger logger, Exception exception, string channel);

    [LoggerMessage(1201, LogLevel.Error, "{Callback} callback of run {RunId} for tool {ToolName} threw; ignored")]
    public static partial void CallbackFailed(ILogger logger, Exception exception, string callback, Guid runId, string toolName);

    [LoggerMessage(1202, LogLevel.Warning, "Looking up runs with tool callbacks failed; their entries are checked again later")]
    public static partial void CallbackSweepFailed(ILogger logger, Exception exception);

    [LoggerMessage(2001, LogLevel.Debug, "Run {RunId}: claim with epoch {ClaimEpoch} was taken away (rescued, cancelled or released); dropping the work")]
    public static partial void ClaimLost(ILogger logger, Guid runId, long claimEpoch);

    [LoggerMessage(2002, LogLevel.Debug, "Run {RunId}: processing cancelled")]
    public static partial void RunProcessingCancelled(ILogger logger, Guid runId);

    [LoggerMessage(2003, LogLevel.Error, "Run {RunId}: processing failed")]
    public static partial void RunProcessingFailed(ILogger logger, Exception exception, Guid runId);

    [LoggerMessage(2004, LogLevel.Information, "Run {RunId}: prompt too long; retrying with the 1M-token context window")]
    public static partial void ExtendedContextRetry(ILogger logger, Guid runId);

    [LoggerMessage(2005, LogLevel.Warning, "Run {RunId}: Claude's stream failed (failure {Failure}): {Error}; retrying")]
    public static partial void ModelRetry(ILogger logger, Guid runId, int failure, string error);

    [LoggerMessage(2006, LogLevel.Debug, "Run {RunId} completed after iteration {Iteration} ({StopReason})")]
    public static partial void RunCompleted(ILogger logger, Guid runId, int iteration, string stopReason);

    [LoggerMessage(2007, LogLevel.Debug, "Run {RunId}: iteration {Iteration} asked for {ToolCount} tools")]
    public static partial void RunWaitingForTools(ILogger logger, Guid runId, int iteration, int toolCount);

    [LoggerMessage(2008, LogLevel.Warning, "Run {RunId} failed ({ErrorType}): {ErrorMessage}")]
    public static partial void RunFailed(ILogger logger, Guid runId, string errorType, string errorMessage);

    [LoggerMessage(2009, LogLevel.Warning, "Run {RunId}: Claude is unavailable ({Error}); trying again in {Wait} (failing for {FailingFor}; AgentPgOptions.ModelUnavailableTimeout)")]
    public static partial void ModelUnavailable(ILogger logger, Guid runId, string error, string wait, string failingFor);

    [LoggerMessage(3001, LogLevel.Warning, "The {Worker} loop failed; retrying")]
    public static partial void WorkerLoopFailed(ILogger logger, Exception exception, string worker);

    [LoggerMessage(3002, LogLevel.Error, "A {Worker} item failed unexpectedly")]
    public static partial void WorkerItemFailed(ILogger logger, Exception exception, string worker);

    [LoggerMessage(4001, LogLevel.Information, "Continued {Count} runs left in pending_tools with all tools done")]
    public static partial void StuckPendingToolsContinued(ILogger logger, int count);

    [LoggerMessage(4002, LogLevel.Debug, "Tool execution {ExecutionId} of run {RunId}: claim taken away; result dropped")]
    public static partial void ToolClaimLost(ILogger logger, Guid executionId, Guid runId);

    [LoggerMessage(4003, LogLevel.Debug, "Tool execution {ExecutionId} of run {RunId}: cancelled")]
    public static partial void ToolCancelled(ILogger logger, Guid executionId, Guid runId);

    [LoggerMessage(4004, LogLevel.Debug, "Tool execution {ExecutionId} ({ToolName}) snoozed for {Delay}")]
    public static partial void ToolSnoozed(ILogger logger, Guid executionId, string toolName, TimeSpan delay);

    [LoggerMessage(4005, LogLevel.Warning, "Tool execution {ExecutionId} ({ToolName}) failed for good after {Attempts} attempts")]
    public static partial void ToolFailed(ILogger logger, Exception exception, Guid executionId, string toolName, int attempts);

    [LoggerMessage(4006, LogLevel.Warning, "Tool execution {ExecutionId} ({ToolName}) attempt {Attempt} failed: {Error}; retrying in {Delay}")]
    public static partial void ToolRetrying(ILogger logger, Guid executionId, string toolName, int attempt, TimeSpan delay, string error);

    [LoggerMessage(4007, LogLevel.Debug, "Child run {ChildRunId} created for run {RunId} (agent tool {ToolName})")]
    public static partial void ChildRunCreated(ILogger logger, Guid childRunId, Guid runId, string toolName);

    [LoggerMessage(4008, LogLevel.Error, "Tool execution {ExecutionId} ({ToolName}) of run {RunId}: its outcome could not be recorded")]
    public static partial void ToolResultNotRecorded(ILogger logger, Exception exception, Guid executionId, string toolName, Guid runId);

    [LoggerMessage(4009, LogLevel.Warning, "Tool execution {ExecutionId} ({ToolName}) handed back: {Reason}")]
    public static partial void ToolReleased(ILogger logger, Guid executionId, string toolName, string reason);

    [LoggerMessage(4010, LogLevel.Debug, "Tool execution {ExecutionId} ({ToolName}): the transactional tool had not ended with its attempt (still unwinding its cancellation, or ignoring it); its connection and transaction stay open until it ends, then roll back")]
    public static partial void ToolOutlivedAttempt(ILogger logger, Guid executionId, string toolName);

    [LoggerMessage(5001, LogLevel.Warning, "Instance {InstanceId} was removed as stale while alive; registering it and its tools again")]
    public static partial void ReRegistering(ILogger logger, string instanceId);

    [LoggerMessage(5002, LogLevel.Warning, "Heartbeat of instance {InstanceId} failed")]
    public static partial void HeartbeatFailed(ILogger logger, Exception exception, string instanceId);

    [LoggerMessage(6001, LogLevel.Warning, "Cancelling message batch {BatchId} at the API failed; its late result will be discarded")]
    public static partial void BatchCancelFailed(ILogger logger, Exception exception, string batchId);

    [LoggerMessage(6002, LogLevel.Debug, "Run {RunId}: iteration {Iteration} submitted as batch {BatchId}")]
    public static partial void BatchSubmitted(ILogger logger, Guid runId, string batchId, int iteration);

    [LoggerMessage(6003, LogLevel.Information, "Run {RunId}: adopted batch {BatchId} left by a stopped or dead instance")]
    public static partial void BatchRunAdopted(ILogger logger, Guid runId, string batchId);

    [LoggerMessage(6004, LogLevel.Warning, "Run {RunId}: polling batch {BatchId} failed; trying again next time")]
    public static partial void BatchPollFailed(ILogger logger, Exception exception, Guid runId, string batchId);

    [LoggerMessage(6005, LogLevel.Warning, "Run {RunId}: the request of batch {BatchId} {Reason}; resubmitting it")]
    public static partial void BatchResubmitting(ILogger logger, Guid runId, string batchId, string reason);

    [LoggerMessage(6007, LogLevel.Warning, "Run {RunId}: creating its message batch failed ({Failures}): {Error}; retrying")]
    public static partial void BatchCreateRetry(ILogger logger, Guid runId, int failures, string error);

    [LoggerMessage(6006, LogLevel.Debug, "Sending a notification on {Channel} failed; receivers will poll")]
    public static partial void NotifyFailed(ILogger logger, Exception exception, string channel);

    [LoggerMessage(7001, LogLevel.Information, "Instance {InstanceId} became the leader")]
    public static partial void BecameLeader(ILogger logger, string instanceId);

    [LoggerMessage(7002, LogLevel.Information, "Instance {InstanceId} is no longer the leader")]
    public static partial void LostLeadership(ILogger logger, string instanceId);

    [LoggerMessage(7003, LogLevel.Warning, "Leadership work of instance {InstanceId} failed")]
    public static partial void LeadershipFailed(ILogger logger, Exception exception, string instanceId);

    [LoggerMessage(7004, LogLevel.Warning, "Removed instance {InstanceId}: no heartbeat within InstanceTtl")]
    public static partial void StaleInstanceRemoved(ILogger logger, string instanceId);

    [LoggerMessage(7005, LogLevel.Warning, "Rescue released {Released} runs and tool executions and continued {Continued} runs (dead instances: {DeadInstances})")]
    public static partial void Rescued(ILogger logger, int released, int continued, string deadInstances);

    [LoggerMessage(7101, LogLevel.Warning, "{RunCount} pending {RunMode} run(s) of agent {AgentName} ({AgentId}) cannot be claimed, oldest {RunId}; missing tools: {MissingTools}. {Problem}")]
    public static partial void UnclaimableRuns(ILogger logger, int runCount, string runMode, string agentName, Guid agentId, Guid runId, string missingTools, string problem);

    [LoggerMessage(7102, LogLevel.Information, "Pending {RunMode} runs of agent {AgentName} ({AgentId}) can be claimed again, or none are left")]
    public static partial void UnclaimableRunsResolved(ILogger logger, string runMode, string agentName, Guid agentId);

    [LoggerMessage(1301, LogLevel.Warning, "Run {RunId} of agent {AgentName} has waited {WaitedSeconds:0} s and no instance can claim it; missing tools: {MissingTools}. {Problem}")]
    public static partial void WaitingForUnclaimableRun(ILogger logger, Guid runId, string agentName, double waitedSeconds, string missingTools, string problem);

    [LoggerMessage(1303, LogLevel.Debug, "Run {RunId} has waited {WaitedSeconds:0} s; it can be claimed ({LiveInstances} live instances)")]
    public static partial void WaitingForClaimableRun(ILogger logger, Guid runId, double waitedSeconds, int liveInstances);

    [LoggerMessage(1302, LogLevel.Debug, "Diagnosing why run {RunId} is not claimed failed")]
    public static partial void DiagnosisFailed(ILogger logger, Exception exception, Guid runId);

    [LoggerMessage(7007, LogLevel.Warning, "Leader job {Job} of instance {InstanceId} failed; it runs again at its next interval")]
    public static partial void MaintenanceFailed(ILogger logger, Exception exception, string job, string instanceId);

    [LoggerMessage(7008, LogLevel.Warning, "Released {Released} runs and tool executions held by live instances that no longer worked on them")]
    public static partial void UnheldWorkReleased(ILogger logger, int released);

    [LoggerMessage(7201, LogLevel.Information, "Rejected {Count} tool calls that waited longer than {Timeout} for approval (AgentPgOptions.ApprovalTimeout)")]
    public static partial void ApprovalsTimedOut(ILogger logger, int count, TimeSpan timeout);

    [LoggerMessage(7202, LogLevel.Information, "Tool execution {ToolExecutionId} was {Decision} by {DecidedBy}")]
    public static partial void ToolCallDecided(ILogger logger, Guid toolExecutionId, string decision, string decidedBy);

    [LoggerMessage(7006, LogLevel.Error, "Hook {Hook} threw; ignored")]
    public static partial void HookFailed(ILogger logger, Exception exception, string hook);

    [LoggerMessage(8001, LogLevel.Debug, "Run {RunId}: publishing streamed deltas failed; watchers get the text with the stored message")]
    public static partial void DeltaPublishFailed(ILogger logger, Exception exception, Guid runId);

    [LoggerMessage(8004, LogLevel.Debug, "Run {RunId}: the answer ended before the run's root was looked up; its deltas wait for the lookup")]
    public static partial void DeltaRootLookupPending(ILogger logger, Guid runId);

    [LoggerMessage(8002, LogLevel.Warning, "Reading the live events of root run {RootRunId} failed; retrying")]
    public static partial void RunEventReadFailed(ILogger logger, Exception exception, Guid rootRunId);

    [LoggerMessage(8003, LogLevel.Information, "Deleted the live events of {Count} runs finished longer than RunEventRetention ago")]
    public static partial void RunEventsExpired(ILogger logger, int count);
}
