using System.Text;
using System.Text.Json;
using AgentPg.Claude;
using AgentPg.Runs;
using Anthropic;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;

namespace AgentPg.Compaction;

/// <summary>Writes the summary of a conversation prefix with the summariser model, through the streaming Messages API.</summary>
internal static class Summarizer
{
    /// <summary>What replaces a pruned tool output.</summary>
    public const string PrunedPlaceholder = "[TOOL OUTPUT PRUNED]";

    /// <summary>How the summary message opens, so the model reads it as context rather than as the user's request.</summary>
    public const string SummaryPreamble = "[Summary of the earlier conversation, which was compacted to save context]\n\n";

    private const int MaxToolResultChars = 500;

    private static readonly IReadOnlyDictionary<string, JsonElement> s_none = new Dictionary<string, JsonElement>();

    public const string SystemPrompt = """
        You summarise conversations between a user and an AI assistant so that the assistant can continue the conversation
        with full context after the original messages are removed. Create a structured summary with the following 9 sections,
        in this order, as Markdown headings; write "None" under a heading that has no content:

        1. Primary Request and Intent
        2. Key Technical Concepts
        3. Files and Code Sections
        4. Errors and Fixes
        5. Problem Solving
        6. User Preferences and Constraints
        7. Pending Tasks
        8. Current Work
        9. Next Step

        Guidelines: be concise but complete; use bullet points; keep specific names, identifiers, numbers, paths and error
        messages exactly; keep chronological order within a section; quote the user's own words where they state intent;
        add nothing that is not in the conversation; prefer actionable facts over commentary.
        """;

    /// <summary>How the note of a call whose input the approver changed opens (agentpg_complete_tools_and_continue_run writes
    /// it first in the call's tool_result, on one line: the input and the comment are JSON; docs/approvals.md).</summary>
    public const string ApprovalNotePrefix = "The approver changed the input of this call before it ran; it ran with ";

    /// <summary>How the is_error tool_result of a call the approver rejected opens, before the reason
    /// (agentpg_decide_tool_approval; docs/approvals.md).</summary>
    public const string RejectionPrefix = "The tool call was rejected by the approver: ";

    /// <summary>Whether pruning rewrites this block (as <see cref="PrunedContent"/>): a tool_result with content blocks (images,
    /// documents), or whose text is longer than what pruning leaves. The same test as the prune's SQL.</summary>
    public static bool IsPrunable(ContentBlock block)
        => block.Type == ContentTypes.ToolResult && (block.ToolContentBlocks.Count > 0 || (block.ToolContent?.Length ?? 0) > PrunedContent(block).Length);

    /// <summary>What a pruned tool_result says: the placeholder, after the approver's note when the result starts with one (the
    /// note is one line, up to the blank line before the output). Claude's tool_use keeps the input Claude wrote, so without
    /// the note a compacted conversation would say that what Claude asked for ran. A rejection is not a tool's output but the
    /// approver's word, short, and what keeps Claude from asking again: it is kept whole. The same text as the prune's SQL.</summary>
    public static string PrunedContent(ContentBlock block)
    {
        var text = block.ToolContent ?? "";
        if (IsRejection(block))
        {
            return text;
        }

        if (!text.StartsWith(ApprovalNotePrefix, StringComparison.Ordinal))
        {
            return PrunedPlaceholder;
        }

        var end = text.IndexOf("\n\n", StringComparison.Ordinal);
        return (end < 0 ? text : text[..end]) + "\n\n" + PrunedPlaceholder;
    }

    private static bool IsRejection(ContentBlock block)
        => block.IsError && block.ToolContentBlocks.Count == 0 && (block.ToolContent ?? "").StartsWith(RejectionPrefix, StringComparison.Ordinal);

    /// <summary>Renders messages as the summariser reads them: "Role:\ncontent", tool calls and results in brackets, long tool
    /// results truncated, pruned outputs shown as the placeholder.</summary>
    public static string Render(IEnumerable<Message> messages, bool pruneToolOutputs)
    {
        var text = new StringBuilder();
        foreach (var message in messages)
        {
            var parts = new List<string>();
            foreach (var block in message.Content)
            {
                switch (block.Type)
                {
                    case ContentTypes.Text when !string.IsNullOrEmpty(block.Text):
                        parts.Add(block.Text);
                        break;
                    case ContentTypes.ToolUse:
                        parts.Add($"[Tool: {block.ToolName}, Input: {block.ToolInput?.GetRawText() ?? "{}"}]");
                        break;
                    case ContentTypes.ToolResult:
                        var content = pruneToolOutputs && IsPrunable(block)
                            ? PrunedContent(block)
                            : Truncate(block.ToolContent ?? "");
                        parts.Add(block.IsError
                            ? $"[Tool Error for {block.ToolResultForUseId}: {content}]"
                            : $"[Tool Result for {block.ToolResultForUseId}: {content}]");
                        break;
                    case ContentTypes.Thinking when !string.IsNullOrEmpty(block.Text):
                        parts.Add($"[Thinking: {block.Text}]");
                        break;
                }
            }

            if (parts.Count == 0)
            {
                continue;
            }

            if (text.Length > 0)
            {
                text.Append("\n\n");
            }

            text.Append(message.Role == MessageRole.Assistant ? "Assistant" : "User").Append(":\n").AppendJoin('\n', parts);
        }

        return text.ToString();
    }

    public static string Prompt(string previousContext, string conversation)
    {
        var prompt = new StringBuilder("Please summarize the following conversation according to the format specified in your instructions.\n\n");
        if (previousContext.Length == 0)
        {
            prompt.Append("<conversation>\n").Append(conversation).Append("\n</conversation>\n\n");
        }
        else
        {
            prompt.Append("<previous_context>\n").Append(previousContext).Append("\n</previous_context>\n\n")
                .Append("The previous context above summarises what came before; incorporate it into your summary.\n\n")
                .Append("<conversation_to_summarize>\n").Append(conversation).Append("\n</conversation_to_summarize>\n\n");
        }

        return prompt.Append("Create a comprehensive summary that will allow continuation of this conversation with full context. ")
            .Append("Follow the 9-section format exactly.").ToString();
    }

    /// <summary>The context window assumed for the summariser model: Claude's standard window. The compacted part of a
    /// conversation on a larger window (the 1M-token one) can be larger than that.</summary>
    public const int SummarizerWindow = 200_000;

    /// <summary>The shortest piece of text a part is split into when Claude says a part is still too long.</summary>
    private const int MinimumSplitChars = 2_000;

    /// <summary>Summarises the rendered messages (<see cref="Render"/>, one string per message, oldest first) in as many
    /// requests as the summariser's window needs: parts of at most <see cref="PartBudget"/> estimated tokens, each folding
    /// the summary of the parts before it (as <c>previous_context</c>); a part Claude still finds too long is split in two.
    /// Returns the last summary and the usage of every call.</summary>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.CompactionFailed"/> when a call fails for another reason,
    /// or a part that cannot be split further is still too long.</exception>
    public static async Task<(string Summary, Usage Usage)> SummarizeInPartsAsync(IAnthropicClient claude, CompactionOptions options, Guid sessionId,
        string previousContext, IReadOnlyList<string> messages, Action? onProgress, CancellationToken cancellationToken, RunModelWait? wait = null)
    {
        var parts = Pack(messages, PartBudget(options));
        if (parts.Count == 0)
        {
            // Nothing renders as text (images only, say): one request still writes the summary, as before.
            parts.Add([""]);
        }

        var work = new Stack<List<string>>();
        for (var i = parts.Count - 1; i >= 0; i--)
        {
            work.Push(parts[i]);
        }

        var summary = previousContext;
        var usage = Usage.Zero;
        while (work.TryPop(out var part))
        {
            try
            {
                var (partSummary, partUsage) = await SummarizeAsync(claude, options, sessionId, Prompt(summary, string.Join("\n\n", part)), cancellationToken, onProgress, wait)
                    .ConfigureAwait(false);
                summary = partSummary;
                usage += partUsage;
            }
            catch (AgentPgException ex) when (ex.InnerException is AnthropicBadRequestException bad && ContextWindowPolicy.IsPromptTooLong(bad.ApiMessage)
                                              && TrySplit(part, out var first, out var second))
            {
                work.Push(second);
                work.Push(first);
            }
        }

        return (summary, usage);
    }

    /// <summary>The estimated tokens of conversation one summariser request carries: three quarters of
    /// <see cref="SummarizerWindow"/> (the estimate can count less than Claude does), less room for the previous summary
    /// and the answer.</summary>
    public static long PartBudget(CompactionOptions options)
        => Math.Max(1_000, (SummarizerWindow * 3L / 4) - (2L * options.SummarizerMaxTokens));

    /// <summary>Groups rendered messages into parts of at most <paramref name="budget"/> estimated tokens, in order; a
    /// message larger than that is cut into pieces that fit.</summary>
    public static List<List<string>> Pack(IReadOnlyList<string> messages, long budget)
    {
        var parts = new List<List<string>>();
        var current = new List<string>();
        long tokens = 0;
        foreach (var message in messages)
        {
            foreach (var piece in Cut(message, budget))
            {
                var size = TokenEstimate.Of(piece) + 1;
                if (current.Count > 0 && tokens + size > budget)
                {
                    parts.Add(current);
                    current = [];
                    tokens = 0;
                }

                current.Add(piece);
                tokens += size;
            }
        }

        if (current.Count > 0)
        {
            parts.Add(current);
        }

        return parts;
    }

    /// <summary>Cuts a text into pieces of at most <paramref name="budget"/> estimated tokens (a UTF-16 char is at most three
    /// UTF-8 bytes, so 4 × budget / 3 chars fit), never inside a surrogate pair.</summary>
    private static IEnumerable<string> Cut(string text, long budget)
    {
        if (TokenEstimate.Of(text) <= budget)
        {
            yield return text;
            yield break;
        }

        var size = (int)Math.Min(int.MaxValue, Math.Max(1, budget * 4 / 3));
        for (var start = 0; start < text.Length;)
        {
            var length = Math.Min(size, text.Length - start);
            if (length < text.Length - start && length > 1 && char.IsHighSurrogate(text[start + length - 1]))
            {
                length--;
            }

            yield return text.Substring(start, length);
            start += length;
        }
    }

    private static bool TrySplit(List<string> part, out List<string> first, out List<string> second)
    {
        if (part.Count > 1)
        {
            first = part.GetRange(0, part.Count / 2);
            second = part.GetRange(part.Count / 2, part.Count - (part.Count / 2));
            return true;
        }

        var text = part[0];
        if (text.Length < 2 * MinimumSplitChars)
        {
            first = second = [];
            return false;
        }

        var middle = text.Length / 2;
        if (char.IsHighSurrogate(text[middle - 1]))
        {
            middle--;
        }

        first = [text[..middle]];
        second = [text[middle..]];
        return true;
    }

    /// <summary>Calls the summariser; returns the summary text and the call's usage.</summary>
    /// <exception cref="AgentPgException"><see cref="AgentPgErrorCode.CompactionFailed"/> when Claude fails or answers nothing.</exception>
    /// <remarks>With <paramref name="wait"/> (a run's automatic compaction), a call that fails because Claude is unavailable
    /// is retried as the run's own model calls are (<see cref="AgentPgOptions.ModelUnavailableTimeout"/>), and the run fails
    /// with <c>model_error</c> when Claude stays unavailable for longer; an explicit compaction fails at once.</remarks>
    public static async Task<(string Summary, Usage Usage)> SummarizeAsync(IAnthropicClient claude, CompactionOptions options, Guid sessionId, string prompt,
        CancellationToken cancellationToken, Action? onProgress = null, RunModelWait? wait = null)
    {
        var body = new Dictionary<string, JsonElement>(StringComparer.Ordinal)
        {
            ["model"] = JsonSerializer.SerializeToElement(options.SummarizerModel),
            ["max_tokens"] = JsonSerializer.SerializeToElement(options.SummarizerMaxTokens),
            ["system"] = JsonSerializer.SerializeToElement(SystemPrompt),
            ["messages"] = JsonSerializer.SerializeToElement(new[]
            {
                new Dictionary<string, object> { ["role"] = "user", ["content"] = prompt },
            }),
        };
        StreamAggregator aggregator;
        while (true)
        {
            aggregator = new StreamAggregator { OnProgress = onProgress };
            try
            {
                using (wait?.Retries.Attempt())
                {
                    var events = claude.Messages.CreateStreaming(MessageCreateParams.FromRawUnchecked(s_none, s_none, body), cancellationToken);
                    await foreach (var ev in events.WithCancellation(cancellationToken).ConfigureAwait(false))
                    {
                        aggregator.Add(ev.Json);
                    }
                }

                break;
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                if (wait is not null
                    && await wait.Retries.WaitOutAsync("The summary of the run's automatic compaction", ex, wait.Claimed, wait.Progress.ReportNow, cancellationToken).ConfigureAwait(false))
                {
                    continue;
                }

                throw new AgentPgException(AgentPgErrorCode.CompactionFailed, "Compact",
                    $"The summariser model '{options.SummarizerModel}' failed: {ex.Message} Nothing was changed.", ex) { SessionId = sessionId };
            }
        }

        // Charged whatever follows (a summary cut off at max_tokens is refused below but paid for).
        Diagnostics.Telemetry.Answered(options.SummarizerModel, aggregator.Response, "streaming");
        var summary = aggregator.Response.Text.Trim();
        if (!aggregator.Response.Completed || summary.Length == 0)
        {
            throw new AgentPgException(AgentPgErrorCode.CompactionFailed, "Compact",
                $"The summariser model '{options.SummarizerModel}' returned no summary (stop reason {aggregator.Response.StopReason ?? "none"}). Nothing was changed.")
            { SessionId = sessionId };
        }

        // A summary cut off at max_tokens lacks its last sections (the current work, the next step), and a refusal is no
        // summary at all: either would replace the old part of the conversation with less than it held.
        if (aggregator.Response.StopReason is Runs.StopReasons.MaxTokens or Runs.StopReasons.ModelContextWindowExceeded or Runs.StopReasons.Refusal)
        {
            throw new AgentPgException(AgentPgErrorCode.CompactionFailed, "Compact",
                aggregator.Response.StopReason == Runs.StopReasons.Refusal
                    ? $"The summariser model '{options.SummarizerModel}' refused to summarise the conversation (stop reason refusal). Nothing was changed."
                    : $"The summariser model '{options.SummarizerModel}' stopped before the summary was complete (stop reason " +
                      $"{aggregator.Response.StopReason}, CompactionOptions.SummarizerMaxTokens {options.SummarizerMaxTokens}): raise " +
                      "SummarizerMaxTokens. Nothing was changed.")
            { SessionId = sessionId };
        }

        return (summary, aggregator.Response.Usage);
    }

    private static string Truncate(string content)
        => content.Length <= MaxToolResultChars ? content : string.Concat(content.AsSpan(0, MaxToolResultChars - 3), "...");
}

/// <summary>How a run's automatic compaction waits out an unavailable Claude: the policy of the run's model calls
/// (<see cref="Runs.ModelRetries"/>) for its summariser calls, and the run it logs them for.</summary>
internal sealed record RunModelWait(Runs.ModelRetries Retries, Runs.ClaimedRun Claimed, Runs.ProgressReporter Progress);
