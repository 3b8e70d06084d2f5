using System.Collections.Concurrent;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Approvals;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Compaction;

/// <summary>A compacted conversation edited after the fact: a regeneration, a restore, and approvers' words (notes and
/// rejections) under pruning.</summary>
public sealed class CompactionAfterTheFactTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string SummarizerPrompt = "You summarise conversations";
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static bool IsSummarizer(FakeRequest r) => r.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal);

    private static bool IsSummarizer(RecordedRequest r)
        => r.IsMessagesCall && r.Body is { } b && b.TryGetProperty("system", out var s) && s.ToString().Contains(SummarizerPrompt, StringComparison.Ordinal);

    private static TestTool Fetch() => new("fetch", (_, input, _) => Task.FromResult($"page {input.GetProperty("n")}: " + new string('x', 800)),
        new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["n"] = new() { Type = "integer" } }, Required = ["n"] });

    /// <summary>Turns of "fetch a page, then answer"; the summariser writes "SUMMARY of:" and the conversation it was shown.</summary>
    private static async Task<(AgentDefinition Agent, Guid Session, Response First, Response Last)> TwoTurnsAsync(Harness h)
    {
        h.Claude.Respond(r =>
        {
            if (IsSummarizer(r))
            {
                return FakeReply.Text("SUMMARY of: " + r.LastUserText);
            }

            return r.ToolResults.Count == 0
                ? FakeReply.ToolUse("fetch", new { n = r.LastUserText.Length })
                : FakeReply.Text("answered (fetched)");
        });
        var agent = await h.AgentAsync(a => a with { Tools = ["fetch"] });
        var session = await h.Client.NewSessionAsync();
        var first = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "question 0"), "the first turn", s_timeout);
        var last = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "question 1"), "the second turn", s_timeout);
        return (agent, session, first, last);
    }

    /// <summary>Everything but the newest message is compactable.</summary>
    private static CompactionOptions AllButTheLast(CompactionStrategy strategy, int target) => new()
    {
        Strategy = strategy, ProtectedTokens = 0, PreserveLastN = 1, TargetTokens = target, UseTokenCountingApi = false,
    };

    [DatabaseFact]
    public async Task Regenerate_OfARunACompactionSummarised_IsRefusedNamingIt_AndAfterTheRestoreClaudeSeesNoneOfTheDiscardedAttempt()
    {
        // Before, the regeneration deleted the run's messages still in the conversation and asked again, while the summary
        // still told the discarded attempt (its prompt, its tool call and the page it fetched): Claude read it first.
        await using var h = await Harness.StartAsync(db, tools: Fetch());
        var (_, session, first, last) = await TwoTurnsAsync(h);
        var compaction = await h.Client.CompactAsync(session, AllButTheLast(CompactionStrategy.Summarization, 1));
        Assert.True(compaction.SummaryCreated);
        var summary = Assert.Single(await h.Client.GetMessagesAsync(session), m => m.IsSummary);
        Assert.Contains("question 1", summary.Content[0].Text, StringComparison.Ordinal);
        var before = JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session));

        var refused = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RegenerateRunAsync(last.RunId));

        Assert.Equal(AgentPgErrorCode.RunCompacted, refused.Code);
        Assert.Equal(last.RunId, refused.RunId);
        Assert.Contains(compaction.EventId.ToString(), refused.Message, StringComparison.Ordinal);
        Assert.Contains("RestoreCompactionAsync", refused.Message, StringComparison.Ordinal);
        Assert.Equal(before, JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session)));
        Assert.Equal(2L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));

        // Restored first, the regeneration asks again with the conversation the run had: the first turn whole, no summary.
        await h.Client.RestoreCompactionAsync(compaction.EventId);
        var regenerated = await h.Client.RegenerateRunAsync(last.RunId);
        var answer = await Eventually.WithinAsync(h.Client.WaitForRunAsync(regenerated), "the regenerated run", s_timeout);

        Assert.Equal("answered (fetched)", answer.Text);
        var sent = h.Claude.Requests.Last(r => r.IsMessagesCall && !IsSummarizer(r)).Body!.Value.GetProperty("messages");
        Assert.Equal(7, sent.GetArrayLength());   // the first turn (4 messages), then the new attempt's prompt, call and result
        var text = sent.GetRawText();
        Assert.DoesNotContain("SUMMARY", text, StringComparison.Ordinal);
        Assert.Contains("question 0", text, StringComparison.Ordinal);
        Assert.Single(text.Split("question 1").Skip(1));
        Assert.Equal(2, text.Split("page 10: ").Length - 1);
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.DoesNotContain(messages, m => m.RunId == last.RunId || m.IsSummary);
        Assert.Equal(4, messages.Count(m => m.RunId == first.RunId));
    }

    [DatabaseFact]
    public async Task Regenerate_OfARunWhoseOutputsWereOnlyPruned_Works_AndARestoreAfterItBringsBackTheEarlierOutputsNotTheDiscardedTurn()
    {
        await using var h = await Harness.StartAsync(db, tools: Fetch());
        var (agent, session, first, last) = await TwoTurnsAsync(h);
        var pruned = await h.Client.CompactAsync(session, AllButTheLast(CompactionStrategy.Hybrid, 100_000));
        Assert.False(pruned.SummaryCreated);
        Assert.Equal(2, pruned.MessagesPruned);

        // Pruning wrote no summary: nothing of the run outlives its messages, so it regenerates.
        var regenerated = await h.Client.RegenerateRunAsync(last.RunId);
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(regenerated), "the regenerated run", s_timeout);
        var newTurn = (await h.Client.GetMessagesAsync(session)).Where(m => m.RunId == regenerated).Select(m => JsonSerializer.Serialize(m)).ToList();
        Assert.Equal(4, newTurn.Count);

        await h.Client.RestoreCompactionAsync(pruned.EventId);

        // The first turn's output is back; the discarded turn stays gone, the new one is as it was.
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.DoesNotContain(messages, m => m.RunId == last.RunId);
        Assert.Equal(newTurn, messages.Where(m => m.RunId == regenerated).Select(m => JsonSerializer.Serialize(m)));
        var outputs = messages.Where(m => m.RunId == first.RunId).SelectMany(m => m.Content).Where(b => b.Type == ContentTypes.ToolResult).ToList();
        Assert.StartsWith("page ", Assert.Single(outputs).ToolContent, StringComparison.Ordinal);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_message_archive WHERE session_id = $1", session));
        Assert.Equal(0, (await h.Client.GetCompactionStatsAsync(session)).CompactionCount);

        // And the conversation is valid for the next run (the fake checks every tool_use has its result).
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "question 2"), "the run after the restore", s_timeout);
        var sent = h.Claude.Requests.Last(r => r.IsMessagesCall).Body!.Value.GetProperty("messages").GetRawText();
        Assert.DoesNotContain("[TOOL OUTPUT PRUNED]", sent, StringComparison.Ordinal);
    }

    /// <summary>The tool_result blocks of a request, oldest first.</summary>
    private static List<JsonElement> ToolResults(FakeRequest request) => [.. request.Messages.EnumerateArray()
        .Where(m => m.GetProperty("content").ValueKind == JsonValueKind.Array)
        .SelectMany(m => m.GetProperty("content").EnumerateArray())
        .Where(b => b.GetProperty("type").GetString() == "tool_result")
        .Select(b => b.Clone())];

    private static string Text(JsonElement toolResult) => toolResult.TryGetProperty("content", out var c)
        ? c.ValueKind == JsonValueKind.String ? c.GetString()! : c.GetRawText()
        : "";

    /// <summary>A session where Claude asked for a lookup and a refund of 40 (which needs approval), the person decided with
    /// <paramref name="decide"/>, and a chat turn followed. The model is shown every tool_result when asked "how much?";
    /// the summariser's prompts are collected.</summary>
    private static async Task<(AgentDefinition Agent, Guid Session, ConcurrentQueue<FakeRequest> Asked, ConcurrentQueue<string> Summarised)> DecidedRefundAsync(
        Harness h, Func<ToolApprovalRequest, Task> decide)
    {
        var asked = new ConcurrentQueue<FakeRequest>();
        var summarised = new ConcurrentQueue<string>();
        h.Claude.Respond(r =>
        {
            if (IsSummarizer(r))
            {
                summarised.Enqueue(r.LastUserText);
                return FakeReply.Text("SUMMARY");
            }

            switch (r.LastUserText)
            {
                case "how much?":
                    asked.Enqueue(r);
                    return FakeReply.Text("told");
                case "thanks":
                    return FakeReply.Text("you are welcome");
                default:
                    return Refunds.Script(r, withLookup: true);
            }
        });
        var agent = await h.AgentAsync(a => a with { Tools = ["issue_refund", "lookup"], ToolsRequiringApproval = ["issue_refund"] });
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "refund order A-1");
        await decide(await Refunds.PendingAsync(h.Client, session, s_timeout));
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the decided run", s_timeout);
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "thanks"), "the chat turn", s_timeout);
        return (agent, session, asked, summarised);
    }

    private static TestTool Lookup() => new("lookup", (_, _, _) => Task.FromResult("order A-1: " + new string('l', 600)));

    [DatabaseFact]
    public async Task ARejectionsReason_SurvivesPruning_AndIsShownToTheSummariser()
    {
        // Before, pruning replaced the approver's "no, and why" with the placeholder like any tool output: Claude kept an
        // is_error result with no reason and could ask for the same call again.
        const string Reason = "The tool call was rejected by the approver: already refunded once; ask the manager";
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: [refunds.Tool(), Lookup()]);
        var (agent, session, asked, summarised) = await DecidedRefundAsync(h, r => h.Client.RejectToolCallAsync(r.ToolExecutionId, "already refunded once; ask the manager"));

        var pruned = await h.Client.CompactAsync(session, AllButTheLast(CompactionStrategy.Hybrid, 100_000));

        Assert.False(pruned.SummaryCreated);
        Assert.Equal(1, pruned.MessagesPruned);
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "how much?"), "the question after pruning", s_timeout);
        var results = ToolResults(Assert.Single(asked));
        Assert.Equal(["[TOOL OUTPUT PRUNED]", Reason], results.Select(Text));
        Assert.True(results[1].GetProperty("is_error").GetBoolean());

        // Summarised later, the summariser reads the reason too.
        Assert.True((await h.Client.CompactAsync(session, AllButTheLast(CompactionStrategy.Hybrid, 1))).SummaryCreated);
        Assert.Contains($": {Reason}]", Assert.Single(summarised), StringComparison.Ordinal);
        Assert.Empty(refunds.Calls);
    }

    [DatabaseFact]
    public async Task AnApproversNoteOfSeveralParagraphs_IsKeptWholeByPruning()
    {
        // Before, the note was cut at the comment's first blank line: "(comment: capped at 25." and the placeholder.
        const string Comment = "capped at 25.\n\nThe customer agreed to 25 on the phone.";
        var refunds = new Refunds();
        await using var h = await Harness.StartAsync(db, tools: [refunds.Tool(receipt: "; receipt: " + new string('r', 400)), Lookup()]);
        var (agent, session, asked, summarised) = await DecidedRefundAsync(h,
            r => h.Client.ApproveToolCallAsync(r.ToolExecutionId, JsonSerializer.SerializeToElement(new { order = "A-1", amount = 25 }), Comment));
        var note = "The approver changed the input of this call before it ran; it ran with {\"order\": \"A-1\", \"amount\": 25} (comment: "
            + JsonSerializer.Serialize(Comment) + ").";

        var pruned = await h.Client.CompactAsync(session, AllButTheLast(CompactionStrategy.Hybrid, 100_000));

        Assert.False(pruned.SummaryCreated);
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "how much?"), "the question after pruning", s_timeout);
        Assert.Equal(["[TOOL OUTPUT PRUNED]", note + "\n\n[TOOL OUTPUT PRUNED]"], ToolResults(Assert.Single(asked)).Select(Text));
        Assert.True((await h.Client.CompactAsync(session, AllButTheLast(CompactionStrategy.Hybrid, 1))).SummaryCreated);
        Assert.Contains(note + "\n\n[TOOL OUTPUT PRUNED]]", Assert.Single(summarised), StringComparison.Ordinal);
        Assert.Equal(25, Assert.Single(refunds.Calls).GetProperty("amount").GetInt32());
    }
}
