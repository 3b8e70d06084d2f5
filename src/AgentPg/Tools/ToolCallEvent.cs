using System.Text.Json;

namespace AgentPg;

/// <summary>Passed to <see cref="RunOptions.OnToolStart"/> and <see cref="RunOptions.OnToolComplete"/>.</summary>
public sealed record ToolCallEvent
{
    /// <summary>Gets the run that asked for the tool.</summary>
    public Guid RunId { get; init; }

    /// <summary>Gets the run's session.</summary>
    public Guid SessionId { get; init; }

    /// <summary>Gets the tool name.</summary>
    public required string ToolName { get; init; }

    /// <summary>Gets the input Claude provided.</summary>
    public JsonElement ToolInput { get; init; }

    /// <summary>Gets whether the tool is a delegate agent.</summary>
    public bool IsAgentTool { get; init; }

    /// <summary>Gets the number of the iteration that asked for the tool.</summary>
    public int IterationNumber { get; init; }

    /// <summary>Gets the output (completion only).</summary>
    public string? Output { get; init; }

    /// <summary>Gets whether the result is an error (completion only).</summary>
    public bool IsError { get; init; }

    /// <summary>Gets the error message (completion only).</summary>
    public string? ErrorMessage { get; init; }

    /// <summary>Gets how long the attempt took (completion only).</summary>
    public TimeSpan Duration { get; init; }
}
