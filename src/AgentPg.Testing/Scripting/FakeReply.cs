namespace AgentPg.Testing;

/// <summary>
/// What the fake model answers to one request: an assistant message (content blocks, stop reason, usage), an HTTP error,
/// or, for a batch request, a canceled, expired or missing result. Make one with the static factories and adjust it with
/// <c>with</c>, for example <c>FakeReply.Text("hi") with { StopReason = FakeStopReason.MaxTokens }</c>.
/// </summary>
/// <remarks>
/// In a batch, a message reply becomes a <c>succeeded</c> result and an <see cref="Error(int, string, string, TimeSpan?, bool?)"/>
/// reply an <c>errored</c> one; stream settings are ignored there.
/// </remarks>
public sealed record FakeReply
{
    /// <summary>The assistant content blocks, in order.</summary>
    public IReadOnlyList<FakeContentBlock> Content { get; init; } = [];

    /// <summary>The <c>stop_reason</c>; see <see cref="FakeStopReason"/>. The factories set <c>tool_use</c> when the
    /// content has a tool_use block and <c>end_turn</c> otherwise.</summary>
    public string StopReason { get; init; } = FakeStopReason.EndTurn;

    /// <summary>The <c>stop_sequence</c> that matched, for <see cref="FakeStopReason.StopSequence"/>.</summary>
    public string? StopSequence { get; init; }

    /// <summary>Explicit token counts; counts left unset are estimated.</summary>
    public FakeUsage? Usage { get; init; }

    /// <summary>The <c>model</c> reported in the answer; <see langword="null"/> echoes the request's model.</summary>
    public string? Model { get; init; }

    /// <summary>When set, the server answers with this HTTP error (or, in a batch, an <c>errored</c> result) instead of a message.</summary>
    public FakeApiError? ApiError { get; init; }

    /// <summary>
    /// The model's latency. For <c>/v1/messages</c>, the wait before the response headers (long waits trigger the SDK's
    /// client timeout). For a batch request, how long after the batch's creation this request is done; <see langword="null"/>
    /// uses <see cref="FakeClaudeServerOptions.BatchProcessingDelay"/>, and <see cref="Timeout.InfiniteTimeSpan"/> never
    /// finishes (the batch runs until canceled or expired). Default: none.
    /// </summary>
    public TimeSpan? Delay { get; init; }

    /// <summary>The wait before each SSE event of a streamed answer (a slow stream). Default: none.</summary>
    public TimeSpan EventDelay { get; init; }

    /// <summary>A failure in the middle of a streamed answer: an <c>event: error</c>, a dropped connection or a stream that
    /// ends without <c>message_stop</c>.</summary>
    public FakeStreamFault? StreamFault { get; init; }

    /// <summary>A hold in the middle of a streamed answer, until the test signals (see <see cref="FakeStreamPause"/>). A pause
    /// at the same event count as <see cref="StreamFault"/> comes first. Default: none.</summary>
    public FakeStreamPause? StreamPause { get; init; }

    internal FakeReplyKind Kind { get; init; }

    /// <summary>A message with one text block, stop reason <c>end_turn</c>.</summary>
    /// <param name="text">The text.</param>
    /// <returns>The reply.</returns>
    public static FakeReply Text(string text) => Message(FakeContentBlock.Text(text));

    /// <summary>A message that calls one tool, stop reason <c>tool_use</c>.</summary>
    /// <param name="name">The tool name.</param>
    /// <param name="input">The input object (anonymous object, dictionary, <c>JsonElement</c>, <c>JsonNode</c> or JSON
    /// string); <see langword="null"/> means <c>{}</c>.</param>
    /// <param name="id">The tool_use id; <see langword="null"/> generates a fresh <c>toolu_01…</c> id for every answer.</param>
    /// <returns>The reply.</returns>
    public static FakeReply ToolUse(string name, object? input = null, string? id = null) =>
        Message(FakeContentBlock.ToolUse(name, input, id));

    /// <summary>
    /// A message made of the given blocks, for example thinking + text + several (parallel) tool_use blocks. The stop reason
    /// is <c>tool_use</c> when a block is a tool_use block, otherwise <c>end_turn</c>.
    /// </summary>
    /// <param name="content">The content blocks, in order.</param>
    /// <returns>The reply.</returns>
    public static FakeReply Message(params FakeContentBlock[] content)
    {
        ArgumentNullException.ThrowIfNull(content);
        foreach (var block in content)
        {
            ArgumentNullException.ThrowIfNull(block, nameof(content));
        }

        return new FakeReply
        {
            Content = [.. content],
            StopReason = content.Any(b => b is FakeToolUseBlock) ? FakeStopReason.ToolUse : FakeStopReason.EndTurn,
        };
    }

    /// <summary>An HTTP error in the real API's shape (in a batch: an <c>errored</c> result).</summary>
    /// <param name="status">The HTTP status, for example 429, 500 or 529.</param>
    /// <param name="type">The <c>error.type</c>, for example <c>overloaded_error</c>.</param>
    /// <param name="message">The <c>error.message</c>.</param>
    /// <param name="retryAfter">Sent as <c>retry-after-ms</c> and <c>retry-after</c>; keep it small, the SDK obeys any value.</param>
    /// <param name="shouldRetry">Sent as <c>x-should-retry</c> when set.</param>
    /// <returns>The reply.</returns>
    public static FakeReply Error(int status, string type, string message, TimeSpan? retryAfter = null, bool? shouldRetry = null)
    {
        if (status is < 400 or > 599)
        {
            throw new ArgumentOutOfRangeException(nameof(status), status, "An error reply needs a 4xx or 5xx status.");
        }

        ArgumentException.ThrowIfNullOrEmpty(type);
        ArgumentNullException.ThrowIfNull(message);
        if (retryAfter < TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(retryAfter), retryAfter, "retry-after must not be negative.");
        }

        return new FakeReply
        {
            ApiError = new FakeApiError(status, type, message) { RetryAfter = retryAfter, ShouldRetry = shouldRetry },
            Kind = FakeReplyKind.Error,
        };
    }

    /// <summary>For a batch request only: a <c>canceled</c> result.</summary>
    /// <returns>The reply.</returns>
    public static FakeReply Canceled() => new() { Kind = FakeReplyKind.Canceled };

    /// <summary>For a batch request only: an <c>expired</c> result.</summary>
    /// <returns>The reply.</returns>
    public static FakeReply Expired() => new() { Kind = FakeReplyKind.Expired };

    /// <summary>For a batch request only: no result line at all in the results JSONL (counted as succeeded in
    /// <c>request_counts</c>), for clients that must cope with a missing line.</summary>
    /// <returns>The reply.</returns>
    public static FakeReply MissingResult() => new() { Kind = FakeReplyKind.Missing };
}

internal enum FakeReplyKind
{
    Message,
    Error,
    Canceled,
    Expired,
    Missing,
}
