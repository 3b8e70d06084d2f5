namespace AgentPg.Compaction;

/// <summary>
/// Splits a root conversation into the prefix a compaction may rewrite and the rest, which it keeps as it is.
/// </summary>
/// <remarks>
/// <para>Kept, from the newest message back: the newest <see cref="CompactionOptions.ProtectedTokens"/> tokens, then
/// <see cref="CompactionOptions.PreserveLastN"/> more messages. Also kept: every message from the first one marked
/// preserved, and from the first message of a run still in progress (unless the caller holds that run and is between two
/// of its iterations).</para>
/// <para>The compactable part is always a prefix (oldest messages), so the summary can take its place and the
/// conversation still alternates; the prefix is shortened until no tool_use in it has its tool_result outside it, so a
/// tool call and its result are never separated.</para>
/// </remarks>
internal sealed class ConversationPartition
{
    private ConversationPartition(IReadOnlyList<Message> messages, long[] tokens, double scale, int prefixLength)
    {
        Messages = messages;
        Tokens = tokens;
        Scale = scale;
        PrefixLength = prefixLength;
        Total = tokens.Sum();
        PrefixTokens = tokens.Take(prefixLength).Sum();
        CompactableCount = messages.Take(prefixLength).Count(m => !m.IsSummary);
    }

    public IReadOnlyList<Message> Messages { get; }

    /// <summary>Tokens per message (estimated, scaled to the exact total when one was counted).</summary>
    public long[] Tokens { get; }

    public long Total { get; }

    /// <summary>Exact tokens per estimated token: 1 when nothing was counted. Estimates compared with <see cref="Total"/> are
    /// scaled by it.</summary>
    public double Scale { get; }

    /// <summary>How many of the oldest messages may be rewritten.</summary>
    public int PrefixLength { get; }

    public long PrefixTokens { get; }

    /// <summary>Messages of the prefix other than earlier summaries: without one, there is nothing to compact.</summary>
    public int CompactableCount { get; }

    public IEnumerable<Message> Prefix => Messages.Take(PrefixLength);

    public IEnumerable<Message> Kept => Messages.Skip(PrefixLength);

    public static ConversationPartition Create(IReadOnlyList<Message> messages, CompactionOptions options, IReadOnlySet<Guid> activeRuns,
        long? exactTotal)
    {
        var n = messages.Count;
        var tokens = new long[n];
        for (var i = 0; i < n; i++)
        {
            tokens[i] = TokenEstimate.Of(messages[i]);
        }

        var estimated = tokens.Sum();
        var scale = 1.0;
        if (exactTotal is { } exact && estimated > 0 && exact > 0)
        {
            scale = (double)exact / estimated;
            for (var i = 0; i < n; i++)
            {
                tokens[i] = (long)Math.Ceiling(tokens[i] * scale);
            }
        }

        var boundary = n;
        long protectedTokens = 0;
        while (boundary > 0 && protectedTokens + tokens[boundary - 1] <= options.ProtectedTokens)
        {
            protectedTokens += tokens[boundary - 1];
            boundary--;
        }

        // The newest message always stays: it is the turn the next request answers.
        boundary = Math.Min(Math.Max(0, boundary - options.PreserveLastN), Math.Max(0, n - 1));
        for (var i = 0; i < boundary; i++)
        {
            if (messages[i].IsPreserved || (messages[i].RunId is { } runId && activeRuns.Contains(runId)))
            {
                boundary = i;
                break;
            }
        }

        boundary = KeepToolPairs(messages, boundary);
        return new ConversationPartition(messages, tokens, scale, boundary);
    }

    private static int KeepToolPairs(IReadOnlyList<Message> messages, int boundary)
    {
        while (boundary > 0)
        {
            var uses = new HashSet<string>(StringComparer.Ordinal);
            for (var i = 0; i < boundary; i++)
            {
                foreach (var block in messages[i].Content)
                {
                    if (block.ToolUseId is { } id)
                    {
                        uses.Add(id);
                    }
                }
            }

            var split = false;
            for (var i = boundary; i < messages.Count && !split; i++)
            {
                split = messages[i].Content.Any(b => b.ToolResultForUseId is { } id && uses.Contains(id));
            }

            if (!split)
            {
                return boundary;
            }

            boundary--;
        }

        return boundary;
    }
}
