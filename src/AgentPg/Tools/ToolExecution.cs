using System.Text.Json;

namespace AgentPg;

/// <summary>One execution of a tool that Claude asked for.</summary>
public sealed record ToolExecution
{
    /// <summary>Gets the id; <see cref="ToolContext.IdempotencyKey"/> derives from it.</summary>
    public Guid Id { get; init; }

    /// <summary>Gets the run.</summary>
    public Guid RunId { get; init; }

    /// <summary>Gets the iteration whose answer asked for the tool.</summary>
    public Guid IterationId { get; init; }

    /// <summary>Gets the state.</summary>
    public ToolExecutionState State { get; init; }

    /// <summary>Gets Claude's id of the <c>tool_use</c> block.</summary>
    public string ToolUseId { get; init; } = "";

    /// <summary>Gets the tool name.</summary>
    public string ToolName { get; init; } = "";

    /// <summary>Gets the input Claude provided.</summary>
    public JsonElement ToolInput { get; init; }

    /// <summary>Gets whether the tool is a delegate agent.</summary>
    public bool IsAgentTool { get; init; }

    /// <summary>Gets the delegate agent, for agent tools.</summary>
    public Guid? AgentId { get; init; }

    /// <summary>Gets the child run created for an agent tool.</summary>
    public Guid? ChildRunId { get; init; }

    /// <summary>Gets the output: the text Claude received, or for a result with images or documents (an
    /// <see cref="IContentTool"/>) its text blocks joined, with a bracketed line for each image or document.</summary>
    public string? ToolOutput { get; init; }

    /// <summary>Gets the content blocks (text, image, document) Claude received when the result had images or documents;
    /// empty for a text result (<see cref="ToolOutput"/> is then all of it).</summary>
    public IReadOnlyList<ContentBlock> ToolOutputBlocks { get; init; } = [];

    /// <summary>Gets whether the result is an error.</summary>
    public bool IsError { get; init; }

    /// <summary>Gets the error message.</summary>
    public string? ErrorMessage { get; init; }

    /// <summary>Gets the instance executing it, if any.</summary>
    public string? ClaimedByInstanceId { get; init; }

    /// <summary>Gets the fencing token, incremented on every claim and release.</summary>
    public long ClaimEpoch { get; init; }

    /// <summary>Gets how many attempts were made.</summary>
    public int AttemptCount { get; init; }

    /// <summary>Gets how many attempts are allowed.</summary>
    public int MaxAttempts { get; init; }

    /// <summary>Gets when the execution may run next.</summary>
    public DateTimeOffset ScheduledAt { get; init; }

    /// <summary>Gets how many times the tool snoozed.</summary>
    public int SnoozeCount { get; init; }

    /// <summary>Gets the error of the last failed attempt.</summary>
    public string? LastError { get; init; }

    /// <summary>Gets when the execution was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Gets when the current or last attempt started.</summary>
    public DateTimeOffset? StartedAt { get; init; }

    /// <summary>Gets when the execution reached a terminal state.</summary>
    public DateTimeOffset? CompletedAt { get; init; }
}
