using System.Text.Json;

namespace AgentPg;

/// <summary>A person's decision on a tool call that required approval, as shown in <see cref="ToolCall.Approval"/>.</summary>
public sealed record ToolApproval
{
    /// <summary>Gets whether the call was approved (<see langword="false"/>: rejected, also by the approval timeout).</summary>
    public bool Approved { get; init; }

    /// <summary>Gets the approver's comment, or the rejection reason ("approval timed out" for the timeout).</summary>
    public string? Comment { get; init; }

    /// <summary>Gets who decided, when the caller said so.</summary>
    public string? DecidedBy { get; init; }

    /// <summary>Gets when the decision was recorded (the database clock).</summary>
    public DateTimeOffset DecidedAt { get; init; }

    /// <summary>Gets Claude's input when the approver replaced it (the call ran with <see cref="ToolCall.Input"/>).</summary>
    public JsonElement? OriginalInput { get; init; }
}
