using System.Text.Json;

namespace AgentPg;

/// <summary>A tool call waiting for a person's decision, as listed by <see cref="AgentPgClient.GetPendingApprovalsAsync"/> and
/// passed to <see cref="AgentPgHooks.OnApprovalRequested"/>.</summary>
public sealed record ToolApprovalRequest
{
    /// <summary>Gets the tool execution to approve or reject.</summary>
    public Guid ToolExecutionId { get; init; }

    /// <summary>Gets the run that asked for the tool (a child run when an agent delegated).</summary>
    public Guid RunId { get; init; }

    /// <summary>Gets the root run of the hierarchy (<see cref="RunId"/> itself at depth 0).</summary>
    public Guid RootRunId { get; init; }

    /// <summary>Gets the session.</summary>
    public Guid SessionId { get; init; }

    /// <summary>Gets the agent that asked for the tool.</summary>
    public Guid AgentId { get; init; }

    /// <summary>Gets the tool name (a delegate agent's name for an agent tool).</summary>
    public string ToolName { get; init; } = "";

    /// <summary>Gets the input Claude provided.</summary>
    public JsonElement Input { get; init; }

    /// <summary>Gets the depth of <see cref="RunId"/> in its hierarchy (0 = a root run).</summary>
    public int Depth { get; init; }

    /// <summary>Gets when the approval was requested (the database clock).</summary>
    public DateTimeOffset RequestedAt { get; init; }
}
