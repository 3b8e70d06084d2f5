using System.Text.Json;

namespace AgentPg;

/// <summary>Something that happened in a run or one of its descendants, as delivered by <see cref="AgentPgClient.WatchRunAsync"/>.</summary>
/// <remarks>An event once delivered with a <see cref="Sequence"/> is delivered with the same sequence to every watcher and on
/// every resume (until <see cref="AgentPgOptions.RunEventRetention"/> after the root run finished).</remarks>
public abstract record RunEvent
{
    /// <summary>Gets the run the event is about (the watched run or one of its descendants).</summary>
    public required Guid RunId { get; init; }

    /// <summary>Gets the root of the run's hierarchy; sequences are counted per root run.</summary>
    public required Guid RootRunId { get; init; }

    /// <summary>Gets the run's session.</summary>
    public required Guid SessionId { get; init; }

    /// <summary>Gets the run's depth (0 for a root run, 1 for a run created by an agent tool of the root run, …).</summary>
    public required int Depth { get; init; }

    /// <summary>Gets the event's position in its root run's stream: strictly increasing, not necessarily contiguous. Pass the last
    /// one received as <c>afterSequence</c> to resume.</summary>
    public required long Sequence { get; init; }

    /// <summary>Gets when the event was recorded (database clock).</summary>
    public required DateTimeOffset Timestamp { get; init; }
}

/// <summary>A run changed state (a child run's first event is its creation, in <see cref="RunState.Pending"/>).</summary>
public sealed record RunStateChangedEvent : RunEvent
{
    /// <summary>Gets the new state.</summary>
    public required RunState State { get; init; }

    /// <summary>Gets the state before, when known.</summary>
    public RunState? PreviousState { get; init; }
}

/// <summary>A model call started. An iteration abandoned by an instance that died is followed by a new iteration (the next
/// number); text streamed for the abandoned one never reaches a stored message.</summary>
public sealed record IterationStartedEvent : RunEvent
{
    /// <summary>Gets the iteration's number (1 for the first).</summary>
    public required int IterationNumber { get; init; }
}

/// <summary>Text Claude streamed, coalesced (a few tens of milliseconds or a few kilobytes at a time).</summary>
public sealed record TextDeltaEvent : RunEvent
{
    /// <summary>Gets the iteration the text belongs to.</summary>
    public required int IterationNumber { get; init; }

    /// <summary>Gets the position of the content block in the assistant message.</summary>
    public required int BlockIndex { get; init; }

    /// <summary>Gets the text, to append to what the block already received.</summary>
    public required string Text { get; init; }
}

/// <summary>Extended-thinking text Claude streamed, coalesced like <see cref="TextDeltaEvent"/>.</summary>
public sealed record ThinkingDeltaEvent : RunEvent
{
    /// <summary>Gets the iteration the thinking belongs to.</summary>
    public required int IterationNumber { get; init; }

    /// <summary>Gets the position of the content block in the assistant message.</summary>
    public required int BlockIndex { get; init; }

    /// <summary>Gets the thinking text, to append to what the block already received.</summary>
    public required string Thinking { get; init; }
}

/// <summary>A piece of the input of a tool call Claude is writing, coalesced like <see cref="TextDeltaEvent"/>: what a page
/// shows while a long input (a file's content, a query) streams, before the call starts. Concatenated in order, the pieces of
/// one block are the input's JSON text; it is complete, and valid JSON, only when the block is (the stored message and the
/// call's <see cref="ToolCallStartedEvent"/> carry the parsed input). Server tools' calls (<c>web_search</c>, …) stream their
/// input too.</summary>
/// <remarks>A watch that starts in the middle of a call gets the input so far as its first piece. An answer cut off at
/// <c>max_tokens</c> in the middle of a call leaves its input incomplete: that call never runs, and the iteration is repeated.</remarks>
public sealed record ToolInputDeltaEvent : RunEvent
{
    /// <summary>Gets the iteration the tool call belongs to.</summary>
    public required int IterationNumber { get; init; }

    /// <summary>Gets the position of the tool call's block in the assistant message.</summary>
    public required int BlockIndex { get; init; }

    /// <summary>Gets the tool call's id (Claude's <c>toolu_…</c> or <c>srvtoolu_…</c>), which its tool execution's
    /// <see cref="ToolExecution.ToolUseId"/> repeats.</summary>
    public required string ToolUseId { get; init; }

    /// <summary>Gets the name of the tool being called.</summary>
    public required string ToolName { get; init; }

    /// <summary>Gets the JSON text to append to what the call's input already received (Claude's <c>partial_json</c>).</summary>
    public required string PartialJson { get; init; }
}

/// <summary>Claude is unavailable (rate limited, overloaded, failing or unreachable) for a model call of the run — its streamed
/// answer, the creation of its message batch, or a summary of its automatic compaction — and the run waits
/// <see cref="Wait"/> before calling again, as <see cref="AgentPgOptions.ModelUnavailableTimeout"/> allows. One event per wait;
/// the call's next attempt follows (an <see cref="IterationStartedEvent"/> with the same number when text was already
/// streamed, then its text), or the run fails with <c>model_error</c> once the timeout has passed.</summary>
/// <remarks>Recorded only while the run is watched: a watch that starts during an outage sees the waits from then on (the
/// ones before are not back-filled, unlike the run's other events).</remarks>
public sealed record ModelUnavailableEvent : RunEvent
{
    /// <summary>Gets the iteration whose model call waits.</summary>
    public required int IterationNumber { get; init; }

    /// <summary>Gets Claude's answer (the API's error type and message) or the transport's error, never the API key.</summary>
    public required string Error { get; init; }

    /// <summary>Gets how long the run waits before the next attempt.</summary>
    public required TimeSpan Wait { get; init; }

    /// <summary>Gets when the next attempt is due (<see cref="RunEvent.Timestamp"/> plus <see cref="Wait"/>).</summary>
    public DateTimeOffset RetryAt => Timestamp + Wait;

    /// <summary>Gets how long the call has been failing.</summary>
    public required TimeSpan FailingFor { get; init; }
}

/// <summary>A message of the run was stored (the prompt, an assistant answer, tool results).</summary>
public sealed record MessageStoredEvent : RunEvent
{
    /// <summary>Gets the message with its content blocks, as it is when the event is read: <see langword="null"/> only when it
    /// was deleted since (by a regeneration, or by a compaction that summarised it); pruned when a compaction pruned its tool
    /// outputs since.</summary>
    public required Message? Message { get; init; }
}

/// <summary>A tool call started executing (an agent tool: its child run was created); again, with the same
/// <see cref="ToolExecutionId"/>, for each retry of a failed attempt, a snooze or an attempt a crash interrupted. It is
/// still one call, which one <see cref="ToolCallCompletedEvent"/> ends.</summary>
public sealed record ToolCallStartedEvent : RunEvent
{
    /// <summary>Gets the tool execution.</summary>
    public required Guid ToolExecutionId { get; init; }

    /// <summary>Gets the tool's name.</summary>
    public required string ToolName { get; init; }

    /// <summary>Gets the input Claude gave the tool.</summary>
    public required JsonElement Input { get; init; }

    /// <summary>Gets whether the tool is another agent.</summary>
    public required bool IsAgentTool { get; init; }

    /// <summary>Gets the child run answering an agent tool.</summary>
    public Guid? ChildRunId { get; init; }
}

/// <summary>A tool call waits for a person's decision (the tool is in <see cref="AgentDefinition.ToolsRequiringApproval"/>): decide
/// it with <c>ApproveToolCallAsync</c> or <c>RejectToolCallAsync</c>. An approval is followed by the call's
/// <see cref="ToolCallStartedEvent"/> and <see cref="ToolCallCompletedEvent"/>; a rejection (or the approval timeout) by its
/// <see cref="ToolCallCompletedEvent"/> with the reason as an error.</summary>
public sealed record ApprovalRequestedEvent : RunEvent
{
    /// <summary>Gets the tool execution waiting for the decision.</summary>
    public required Guid ToolExecutionId { get; init; }

    /// <summary>Gets the tool's name (for an agent tool, the delegate agent's tool name).</summary>
    public required string ToolName { get; init; }

    /// <summary>Gets the input Claude gave the tool, as requested (an approver's edit shows in the
    /// <see cref="ToolCallStartedEvent"/>).</summary>
    public required JsonElement Input { get; init; }
}

/// <summary>A tool call finished (successfully, with an error, or skipped).</summary>
public sealed record ToolCallCompletedEvent : RunEvent
{
    /// <summary>Gets the tool execution.</summary>
    public required Guid ToolExecutionId { get; init; }

    /// <summary>Gets the tool's name.</summary>
    public required string ToolName { get; init; }

    /// <summary>Gets the tool's output (the error text for a failure).</summary>
    public required string Output { get; init; }

    /// <summary>Gets whether the result is an error.</summary>
    public required bool IsError { get; init; }

    /// <summary>Gets how long the execution took, when it ran.</summary>
    public TimeSpan? Duration { get; init; }
}

/// <summary>A run (the watched run or a descendant) reached a final state. The stream ends after the watched run's.</summary>
public sealed record RunFinishedEvent : RunEvent
{
    /// <summary>Gets the final state.</summary>
    public required RunState State { get; init; }

    /// <summary>Gets the response of a completed run.</summary>
    public Response? Response { get; init; }

    /// <summary>Gets the error of a failed or cancelled run.</summary>
    public string? Error { get; init; }
}
