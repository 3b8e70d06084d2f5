using System.Text.Json;

namespace AgentPg;

/// <summary>A tool call of a run, as reported in <see cref="Response.ToolCalls"/>.</summary>
public sealed record ToolCall
{
    /// <summary>Gets the tool name.</summary>
    public required string Name { get; init; }

    /// <summary>Gets the input Claude provided.</summary>
    public JsonElement Input { get; init; }

    /// <summary>Gets the output ("" when none): the text Claude received, or for a result with images or documents its text
    /// blocks joined, with a bracketed line for each image or document.</summary>
    public string Output { get; init; } = "";

    /// <summary>Gets the content blocks (text, image, document) Claude received when the result had images or documents;
    /// empty for a text result (<see cref="Output"/> is then all of it).</summary>
    public IReadOnlyList<ContentBlock> OutputBlocks { get; init; } = [];

    /// <summary>Gets whether the result was an error.</summary>
    public bool IsError { get; init; }

    /// <summary>Gets the error message ("" when none).</summary>
    public string ErrorMessage { get; init; } = "";

    /// <summary>Gets whether the tool was a delegate agent.</summary>
    public bool IsAgentTool { get; init; }

    /// <summary>Gets the delegate agent of an agent tool.</summary>
    public Guid? AgentId { get; init; }

    /// <summary>Gets the child run of an agent tool.</summary>
    public Guid? ChildRunId { get; init; }

    /// <summary>Gets how long the last attempt took (zero when unknown).</summary>
    public TimeSpan Duration { get; init; }

    /// <summary>Gets the number of the iteration that asked for the tool.</summary>
    public int IterationNumber { get; init; }

    /// <summary>Gets the execution state.</summary>
    public ToolExecutionState State { get; init; }

    /// <summary>Gets when the last attempt started.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>Gets when the execution finished.</summary>
    public DateTimeOffset? CompletedAt { get; init; }

    /// <summary>Gets whether the call had to wait for a person's decision (<see cref="AgentDefinition.ToolsRequiringApproval"/>).</summary>
    public bool RequiresApproval { get; init; }

    /// <summary>Gets the decision on a call that required approval; <see langword="null"/> while it waits or when none was needed.</summary>
    public ToolApproval? Approval { get; init; }
}
