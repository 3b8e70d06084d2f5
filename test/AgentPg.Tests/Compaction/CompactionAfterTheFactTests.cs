using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Compaction;

/// <summary>A compacted conversation edited after the fact: a regeneration, a restore.</summary>
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
}
