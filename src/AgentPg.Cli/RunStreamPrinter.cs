using System.Text.Encodings.Web;
using System.Text.Json;

namespace AgentPg.Cli;

/// <summary>Writes a run's events as a terminal transcript (for <c>runs watch</c> and <c>chat</c>): the watched run's text as it
/// streams, tool calls as they start and finish (a delegated run's indented by its depth below the watched run, whose
/// <paramref name="depth"/> it is), and tool calls waiting for
/// approval. What the model, the tools and the application wrote is made inert for the terminal (<see cref="Format.Terminal"/>).</summary>
internal sealed class RunStreamPrinter(TextWriter output, Guid runId, bool showStates, int depth = 0)
{
    // Read by people: + and ° as they are, not \u002B (the default encoder escapes for HTML).
    private static readonly JsonSerializerOptions s_display = new() { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    private readonly Dictionary<Guid, int> _lastIteration = [];
    private readonly System.Text.StringBuilder _streamed = new();
    private bool _atLineStart = true;

    /// <summary>The watched run's final event, once it arrived.</summary>
    public RunFinishedEvent? Finished { get; private set; }

    /// <summary>Writes one event. Returns the tool call of the run's hierarchy that started waiting for approval with it, if
    /// any (to ask for a decision).</summary>
    public async Task<ApprovalRequestedEvent?> WriteAsync(RunEvent runEvent, CancellationToken cancellationToken)
    {
        var indent = new string(' ', 2 * Math.Max(0, runEvent.Depth - depth));
        ApprovalRequestedEvent? approvalRequested = null;
        switch (runEvent)
        {
            case TextDeltaEvent text when runEvent.RunId == runId:
                // Only the watched run's text (a child run's too, when that is the one watched): a delegated run's answer reaches
                // its parent as the tool result.
                Text(text.Text);
                _streamed.Append(text.Text);
                break;
            case MessageStoredEvent { Message: { Role: MessageRole.Assistant } message } when runEvent.RunId == runId:
                // The stored answer is authoritative: a replay, or a watcher that arrived when the text was already streamed,
                // gets no deltas; deltas lost to a database error leave a gap. Print what the deltas did not.
                var full = string.Concat(message.Content.Where(b => b.Type == ContentTypes.Text).Select(b => b.Text));
                var printed = _streamed.ToString();
                if (full.StartsWith(printed, StringComparison.Ordinal))
                {
                    Text(full[printed.Length..]);
                }

                _streamed.Clear();
                break;
            case IterationStartedEvent iteration:
                var retried = _lastIteration.TryGetValue(runEvent.RunId, out var last) && last >= iteration.IterationNumber;
                _lastIteration[runEvent.RunId] = iteration.IterationNumber;
                if (runEvent.RunId == runId)
                {
                    _streamed.Clear();
                }

                if (retried)
                {
                    Line($"{indent}[retry] the model call of iteration {iteration.IterationNumber} is repeated: the text above from it is discarded");
                }
                else if (showStates)
                {
                    Line($"{indent}[iteration {iteration.IterationNumber}]");
                }

                break;
            case ModelUnavailableEvent unavailable:
                // Always shown: a run that waits minutes for Claude would otherwise look hung.
                Line($"{indent}[waiting] Claude is unavailable ({Format.Line(unavailable.Error, 200)}); trying again in " +
                     $"{Format.Duration(unavailable.Wait)} (failing for {Format.Duration(unavailable.FailingFor)})" +
                     (runEvent.RunId != runId ? $" (run {runEvent.RunId})" : ""));
                break;
            case RunStateChangedEvent state:
                if (showStates)
                {
                    Line($"{indent}[state] {Format.Name(state.State)}{(runEvent.RunId != runId ? $" (run {runEvent.RunId})" : "")}");
                }

                break;
            case ApprovalRequestedEvent approval:
                Line($"{indent}[approval] {approval.ToolName} {Json(approval.Input)} waits for a decision (tool call {approval.ToolExecutionId})");
                approvalRequested = approval;
                break;
            case ToolCallStartedEvent started:
                Line($"{indent}[tool] {started.ToolName} {Json(started.Input)}");
                break;
            case ToolCallCompletedEvent completed:
                Line($"{indent}[tool] {completed.ToolName} {(completed.IsError ? "failed: " : "→ ")}{Format.Line(completed.Output, 200)}" +
                     (completed.Duration is { } duration ? $" ({Format.Duration(duration)})" : ""));
                break;
            case RunFinishedEvent finished:
                if (finished.RunId == runId)
                {
                    Finished = finished;
                }

                if (showStates || (finished.RunId == runId && finished.State != RunState.Completed))
                {
                    Line($"{indent}[{(showStates ? "finished" : "run")}] {Format.Name(finished.State)}" +
                         (finished.Error is { Length: > 0 } error ? ": " + Format.Line(error, 200) : ""));
                }

                break;
        }

        await output.FlushAsync(cancellationToken).ConfigureAwait(false);
        return approvalRequested;
    }

    private void Text(string text)
    {
        if (text.Length > 0)
        {
            output.Write(Format.Terminal(text));
            _atLineStart = text.EndsWith('\n');
        }
    }

    /// <summary>Ends the text in progress with a new line.</summary>
    public void EndLine()
    {
        if (!_atLineStart)
        {
            output.WriteLine();
            _atLineStart = true;
        }
    }

    /// <summary>Writes a line of its own (ending the text in progress first).</summary>
    public void Line(string text)
    {
        EndLine();
        output.WriteLine(Format.Terminal(text));
    }

    /// <summary>Compact JSON on one line (PostgreSQL's jsonb text has spaces), at most 200 characters.</summary>
    public static string Json(JsonElement value)
        => value.ValueKind == JsonValueKind.Undefined ? "" : Format.Line(JsonSerializer.Serialize(value, s_display), 200);
}
