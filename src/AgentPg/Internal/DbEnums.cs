namespace AgentPg.Internal;

/// <summary>Conversions between the public enums and the snake_case values of the database enums.</summary>
internal static class DbEnums
{
    public static string ToDb(this RunState state) => state switch
    {
        RunState.Pending => "pending",
        RunState.BatchSubmitting => "batch_submitting",
        RunState.BatchPending => "batch_pending",
        RunState.BatchProcessing => "batch_processing",
        RunState.Streaming => "streaming",
        RunState.PendingTools => "pending_tools",
        RunState.AwaitingInput => "awaiting_input",
        RunState.Completed => "completed",
        RunState.Cancelled => "cancelled",
        RunState.Failed => "failed",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    public static RunState ParseRunState(string value) => value switch
    {
        "pending" => RunState.Pending,
        "batch_submitting" => RunState.BatchSubmitting,
        "batch_pending" => RunState.BatchPending,
        "batch_processing" => RunState.BatchProcessing,
        "streaming" => RunState.Streaming,
        "pending_tools" => RunState.PendingTools,
        "awaiting_input" => RunState.AwaitingInput,
        "completed" => RunState.Completed,
        "cancelled" => RunState.Cancelled,
        "failed" => RunState.Failed,
        _ => throw new InvalidOperationException($"Unknown run state '{value}' in the database."),
    };

    public static string ToDb(this RunMode mode) => mode == RunMode.Batch ? "batch" : "streaming";

    public static RunMode ParseRunMode(string value) => value switch
    {
        "batch" => RunMode.Batch,
        "streaming" => RunMode.Streaming,
        _ => throw new InvalidOperationException($"Unknown run mode '{value}' in the database."),
    };

    public static string ToDb(this ToolExecutionState state) => state switch
    {
        ToolExecutionState.Pending => "pending",
        ToolExecutionState.Running => "running",
        ToolExecutionState.Completed => "completed",
        ToolExecutionState.Failed => "failed",
        ToolExecutionState.Skipped => "skipped",
        ToolExecutionState.AwaitingApproval => "awaiting_approval",
        _ => throw new ArgumentOutOfRangeException(nameof(state), state, null),
    };

    public static ToolExecutionState ParseToolExecutionState(string value) => value switch
    {
        "pending" => ToolExecutionState.Pending,
        "running" => ToolExecutionState.Running,
        "completed" => ToolExecutionState.Completed,
        "failed" => ToolExecutionState.Failed,
        "skipped" => ToolExecutionState.Skipped,
        "awaiting_approval" => ToolExecutionState.AwaitingApproval,
        _ => throw new InvalidOperationException($"Unknown tool execution state '{value}' in the database."),
    };

    public static string ToDb(this BatchStatus status) => status switch
    {
        BatchStatus.InProgress => "in_progress",
        BatchStatus.Canceling => "canceling",
        BatchStatus.Ended => "ended",
        _ => throw new ArgumentOutOfRangeException(nameof(status), status, null),
    };

    public static BatchStatus ParseBatchStatus(string value) => value switch
    {
        "in_progress" => BatchStatus.InProgress,
        "canceling" => BatchStatus.Canceling,
        "ended" => BatchStatus.Ended,
        _ => throw new InvalidOperationException($"Unknown batch status '{value}' in the database."),
    };

    public static string ToDb(this MessageRole role) => role switch
    {
        MessageRole.User => "user",
        MessageRole.Assistant => "assistant",
        MessageRole.System => "system",
        _ => throw new ArgumentOutOfRangeException(nameof(role), role, null),
    };

    public static MessageRole ParseMessageRole(string value) => value switch
    {
        "user" => MessageRole.User,
        "assistant" => MessageRole.Assistant,
        "system" => MessageRole.System,
        _ => throw new InvalidOperationException($"Unknown message role '{value}' in the database."),
    };
}
