using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Compaction;

public sealed class CompactionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string SummarizerPrompt = "You summarise conversations";

    private static TestTool Fetch() => new("fetch", (_, input, _) => Task.FromResult($"page {input.GetProperty("n")}: " + new string('x', 800)),
        new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["n"] = new() { Type = "integer" } }, Required = ["n"] });

    /// <summary>Runs turns of "fetch a page, then answer"; the summariser (recognised by its system prompt) answers "SUMMARY".</summary>
    private static void ScriptModel(Harness h, Action<FakeRequest>? seen = null) => h.Claude.Respond(request =>
    {
        seen?.Invoke(request);
        if (request.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal))
        {
            return FakeReply.Text("SUMMARY of the earlier turns");
        }

        if (request.ToolResults.Count == 0 && request.HasTool("fetch"))
        {
            return FakeReply.Message(
                FakeContentBlock.Thinking("I should fetch the page.", signature: "sig-" + Guid.NewGuid().ToString("N")),
                FakeContentBlock.ToolUse("fetch", new { n = request.LastUserText.Length }));
        }

        return FakeReply.Text("answer to: " + request.LastUserText + (request.ToolResults.Count > 0 ? " (fetched)" : ""));
    });

    private static CompactionOptions Small(CompactionStrategy strategy = CompactionStrategy.Hybrid, int target = 100) => new()
    {
        Strategy = strategy,
        ProtectedTokens = 50,
        PreserveLastN = 2,
        TargetTokens = target,
        MaxTokensForModel = 200_000,
        UseTokenCountingApi = true,
    };

    private async Task<(Harness H, AgentDefinition Agent, Guid Session)> SessionWithTurnsAsync(int turns, Action<AgentPgOptions>? configure = null, bool withChild = false)
    {
        var h = await Harness.StartAsync(db, configure, tools: Fetch());
        ScriptModel(h);
        AgentDefinition? child = null;
        if (withChild)
        {
            child = await h.AgentAsync(a => a with { Name = "helper_" + Guid.NewGuid().ToString("N")[..8], Description = "Helps.", Tools = [] });
        }

        var agent = await h.AgentAsync(a => a with { Tools = ["fetch"], AgentIds = child is null ? [] : [child.Id] });
        var session = await h.Client.NewSessionAsync();
        for (var i = 0; i < turns; i++)
        {
            await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, $"question {i}"), $"turn {i}");
        }

        if (child is not null)
        {
            // One delegation: the parent calls the child agent as a tool; the child's conversation is in the session but not
            // in the root conversation.
            h.Claude.Enqueue(FakeReply.ToolUse(child.Name, new { task = "help me" }), FakeReply.Text("child done"), FakeReply.Text("parent done"));
            await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "delegate please"), "the delegating turn");
        }

        return (h, agent, session);
    }

    [DatabaseFact]
    public async Task Summarization_ReplacesThePrefixWithAUserTurn_ArchivesExactlyTheRemoved_AndTheNextRunIsValid()
    {
        var (h, agent, session) = await SessionWithTurnsAsync(5, withChild: true);
        await using var _ = h;
        var before = await h.Client.GetMessagesAsync(session);
        var childMessages = before.Where(m => m.RunId is { } r && IsChildRun(h, r)).ToList();
        Assert.NotEmpty(childMessages);

        var result = await h.Client.CompactAsync(session, Small(CompactionStrategy.Summarization));

        Assert.True(result.SummaryCreated);
        Assert.True(result.MessagesRemoved > 0);
        Assert.Equal(0, result.MessagesPruned);
        Assert.True(result.CompactedTokens < result.OriginalTokens);
        var after = await h.Client.GetMessagesAsync(session);
        var removedIds = before.Select(m => m.Id).Except(after.Select(m => m.Id)).ToHashSet();
        Assert.Equal(result.MessagesRemoved, removedIds.Count);

        // The summary is a user turn in place of the prefix, first in the root conversation.
        var summary = Assert.Single(after, m => m.IsSummary);
        Assert.Equal(MessageRole.User, summary.Role);
        Assert.Null(summary.RunId);
        Assert.Contains("SUMMARY of the earlier turns", Assert.Single(summary.Content).Text, StringComparison.Ordinal);
        Assert.Equal(summary.Id, after.First(m => m.RunId is null || !IsChildRun(h, m.RunId.Value)).Id);

        // Delegated runs' messages are untouched; the archive holds exactly the removed messages.
        Assert.All(childMessages, m => Assert.Contains(after, a => a.Id == m.Id));
        var archived = await ArchivedIdsAsync(result.EventId);
        Assert.Equal(removedIds.OrderBy(x => x), archived.OrderBy(x => x));

        // No tool_use in the kept part has lost its result, and the next run passes the fake's strict validation.
        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "after compaction"), "the run after compaction");
        Assert.EndsWith("(fetched)", response.Text, StringComparison.Ordinal);
        var last = h.Claude.Requests.Last(r => r.IsMessagesCall && !IsSummarizer(r)).Body!.Value.GetProperty("messages");
        Assert.Contains("SUMMARY of the earlier turns", last[0].GetRawText(), StringComparison.Ordinal);

        var stats = await h.Client.GetCompactionStatsAsync(session);
        Assert.Equal(1, stats.CompactionCount);
        Assert.Equal(1, stats.SummaryMessages);
        var events = await h.Client.GetCompactionEventsAsync(session);
        var recorded = Assert.Single(events);
        Assert.Equal(result.EventId, recorded.Id);
        Assert.Equal("manual", recorded.Reason);
        Assert.Equal(result.MessagesRemoved, recorded.MessagesRemoved);
        Assert.Equal("claude-haiku-4-5", recorded.ModelUsed);
        Assert.True(recorded.Usage.OutputTokens > 0);
    }

    [DatabaseFact]
    public async Task RestoreCompaction_PutsBackTheMessageListByteForByte()
    {
        var (h, _, session) = await SessionWithTurnsAsync(4);
        await using var _ = h;
        var before = JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session));

        var summarized = await h.Client.CompactAsync(session, Small(CompactionStrategy.Summarization));
        await h.Client.RestoreCompactionAsync(summarized.EventId);
        Assert.Equal(before, JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session)));

        var pruned = await h.Client.CompactAsync(session, Small(target: 100_000));
        Assert.False(pruned.SummaryCreated);
        await h.Client.RestoreCompactionAsync(pruned.EventId);
        Assert.Equal(before, JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session)));

        var stats = await h.Client.GetCompactionStatsAsync(session);
        Assert.Equal(0, stats.CompactionCount);
        Assert.All(await h.Client.GetCompactionEventsAsync(session), e => Assert.NotNull(e.RestoredAt));
        Assert.Equal(0, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_message_archive WHERE session_id = $1", session));

        var again = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RestoreCompactionAsync(pruned.EventId));
        Assert.Equal(AgentPgErrorCode.CompactionFailed, again.Code);
        var unknown = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RestoreCompactionAsync(Guid.NewGuid()));
        Assert.Equal(AgentPgErrorCode.CompactionNotFound, unknown.Code);
    }

    [DatabaseFact]
    public async Task RestoreCompaction_OfAnOlderCompaction_AsksToRestoreTheLaterOneFirst()
    {
        var (h, _, session) = await SessionWithTurnsAsync(4);
        await using var _ = h;
        var first = await h.Client.CompactAsync(session, Small(target: 100_000));
        var second = await h.Client.CompactAsync(session, Small(CompactionStrategy.Summarization));

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RestoreCompactionAsync(first.EventId));
        Assert.Contains("restore the later ones first", ex.Message, StringComparison.Ordinal);

        await h.Client.RestoreCompactionAsync(second.EventId);
        await h.Client.RestoreCompactionAsync(first.EventId);
    }

    [DatabaseFact]
    public async Task Hybrid_WhenPruningIsEnough_ReplacesOldToolOutputsWithAPlaceholder_AndCallsNoModel()
    {
        var (h, agent, session) = await SessionWithTurnsAsync(5);
        await using var _ = h;
        var requestsBefore = h.Claude.Requests.Count;

        var result = await h.Client.CompactAsync(session, Small(target: 100_000));

        Assert.False(result.SummaryCreated);
        Assert.Equal(0, result.MessagesRemoved);
        Assert.True(result.MessagesPruned > 0);
        Assert.DoesNotContain(h.Claude.Requests.Skip(requestsBefore), r => r.IsMessagesCall);
        var results = (await h.Client.GetMessagesAsync(session)).SelectMany(m => m.Content).Where(b => b.Type == ContentTypes.ToolResult).ToList();
        Assert.Contains(results, b => b.ToolContent == "[TOOL OUTPUT PRUNED]");
        Assert.Contains(results, b => b.ToolContent!.StartsWith("page ", StringComparison.Ordinal));   // the protected tail keeps its outputs
        Assert.Equal(result.MessagesPruned, (await ArchivedIdsAsync(result.EventId)).Count);

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "after pruning"), "the run after pruning");
    }

    [DatabaseFact]
    public async Task TwoConcurrentCompactions_OneCompacts_TheOtherGetsAClearErrorAndWritesNothing()
    {
        var (h, _, session) = await SessionWithTurnsAsync(5);
        await using var _ = h;
        var release = new TaskCompletionSource();
        var arrived = 0;
        var bothArrived = new TaskCompletionSource();
        h.Claude.Respond(async (request, ct) =>
        {
            if (Interlocked.Increment(ref arrived) == 2)
            {
                bothArrived.TrySetResult();
            }

            await release.Task.WaitAsync(ct);
            return FakeReply.Text("SUMMARY");
        });

        var one = h.Client.CompactAsync(session, Small(CompactionStrategy.Summarization));
        var two = h.Client.CompactAsync(session, Small(CompactionStrategy.Summarization));
        await Eventually.WithinAsync(bothArrived.Task, "both summariser calls to arrive");
        release.SetResult();
        var outcomes = await Task.WhenAll(Outcome(one), Outcome(two));

        Assert.Single(outcomes, o => o is null);
        var failure = Assert.Single(outcomes, o => o is not null)!;
        Assert.Equal(AgentPgErrorCode.CompactionFailed, failure.Code);
        Assert.Contains("changed while it was being compacted", failure.Message, StringComparison.Ordinal);
        Assert.Single(await h.Client.GetCompactionEventsAsync(session));
        Assert.Single((await h.Client.GetMessagesAsync(session)), m => m.IsSummary);

        static async Task<AgentPgException?> Outcome(Task task)
        {
            try
            {
                await task;
                return null;
            }
            catch (AgentPgException ex)
            {
                return ex;
            }
        }
    }

    [DatabaseFact]
    public async Task CompactionDuringAnActiveRun_KeepsTheRunsMessages_AndTheRunCompletesValidly()
    {
        var gate = new TaskCompletionSource<string>();
        var slow = new TestTool("slow", async (_, _, ct) => await gate.Task.WaitAsync(ct));
        var (h, agent, session) = await SessionWithTurnsAsync(4);
        await using var _ = h;
        h.Client.RegisterTool(slow);
        await h.Client.UpdateAgentAsync(agent with { Tools = ["fetch", "slow"] });
        h.Claude.Enqueue(FakeReply.ToolUse("slow", new { }), FakeReply.Text("SUMMARY"), FakeReply.Text("slow one finished"));
        var runId = await h.Client.RunFastAsync(session, agent.Id, "do the slow thing");
        await Eventually.TrueAsync(async () => (await h.Client.GetRunAsync(runId)).State == RunState.PendingTools, "the run to wait for its tool");

        var result = await h.Client.CompactAsync(session, new CompactionOptions { Strategy = CompactionStrategy.Summarization, ProtectedTokens = 0, PreserveLastN = 0 });

        var kept = await h.Client.GetMessagesAsync(session);
        Assert.True(result.MessagesRemoved > 0);
        Assert.Equal(2, kept.Count(m => m.RunId == runId));   // the run's prompt and its tool_use are kept
        gate.SetResult("slow result");
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run to complete after its tool");
        Assert.Equal("slow one finished", response.Text);
    }

    [DatabaseFact]
    public async Task BadInput_ClearErrors_NothingWritten()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var invalid = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.CompactAsync(Guid.NewGuid(), new CompactionOptions
        {
            Trigger = 1.5,
            TargetTokens = 300_000,
            PreserveLastN = -1,
            SummarizerModel = " ",
        }));
        Assert.Contains("CompactionOptions.Trigger", invalid.Message, StringComparison.Ordinal);
        Assert.Contains("CompactionOptions.TargetTokens", invalid.Message, StringComparison.Ordinal);
        Assert.Contains("CompactionOptions.PreserveLastN", invalid.Message, StringComparison.Ordinal);
        Assert.Contains("CompactionOptions.SummarizerModel", invalid.Message, StringComparison.Ordinal);
        Assert.Contains(AgentPgClientOptionsErrors(new AgentPgOptions { Compaction = new CompactionOptions { Trigger = 0 } }),
            e => e.StartsWith("AgentPgOptions.Compaction.Trigger", StringComparison.Ordinal));

        var unknown = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.CompactAsync(Guid.NewGuid()));
        Assert.Equal(AgentPgErrorCode.SessionNotFound, unknown.Code);

        var empty = await h.Client.NewSessionAsync();
        var nothing = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.CompactAsync(empty));
        Assert.Equal(AgentPgErrorCode.NothingToCompact, nothing.Code);
        Assert.Empty(await h.Client.GetCompactionEventsAsync(empty));
        Assert.Null(await h.Client.CompactIfNeededAsync(empty));
        Assert.False(await h.Client.NeedsCompactionAsync(empty));
    }

    [DatabaseFact]
    public async Task SummarizerFailure_SurfacesTheError_DeletesNothing_RecordsNoEvent()
    {
        var (h, _, session) = await SessionWithTurnsAsync(4);
        await using var _ = h;
        var before = JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session));
        h.Claude.Enqueue(FakeReply.Error(400, "invalid_request_error", "summariser refused", shouldRetry: false));

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.CompactAsync(session, Small(CompactionStrategy.Summarization)));

        Assert.Equal(AgentPgErrorCode.CompactionFailed, ex.Code);
        Assert.Contains("summariser refused", ex.Message, StringComparison.Ordinal);
        Assert.Equal(before, JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session)));
        Assert.Empty(await h.Client.GetCompactionEventsAsync(session));
    }

    // Before: the cut-off summary (without its last sections) or the refusal's text replaced the old part of the conversation.
    [DatabaseTheory]
    [InlineData("max_tokens", "stopped before the summary was complete (stop reason max_tokens, CompactionOptions.SummarizerMaxTokens")]
    [InlineData("refusal", "refused to summarise the conversation")]
    public async Task Summary_CutOffOrRefused_FailsTheCompaction_DeletesNothing(string stopReason, string message)
    {
        var (h, _, session) = await SessionWithTurnsAsync(4);
        await using var _ = h;
        var before = JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session));
        h.Claude.Enqueue(FakeReply.Text("1. Primary Request and Intent: the user wants") with
        {
            StopReason = stopReason == "refusal" ? FakeStopReason.Refusal : FakeStopReason.MaxTokens,
        });

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.CompactAsync(session, Small(CompactionStrategy.Summarization)));

        Assert.Equal(AgentPgErrorCode.CompactionFailed, ex.Code);
        Assert.Contains(message, ex.Message, StringComparison.Ordinal);
        Assert.Equal(before, JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session)));
        Assert.Empty(await h.Client.GetCompactionEventsAsync(session));
    }

    [DatabaseFact]
    public async Task Hooks_SeeTheCompactionBeforeAndItsResultAfter()
    {
        CompactionContext? seenBefore = null;
        CompactionResult? seenAfter = null;
        var (h, _, session) = await SessionWithTurnsAsync(4, o => o.Hooks = new AgentPgHooks
        {
            OnBeforeCompaction = (c, _) => { seenBefore = c; return Task.CompletedTask; },
            OnAfterCompaction = (r, _) => { seenAfter = r; return Task.CompletedTask; },
        });
        await using var _ = h;

        var result = await h.Client.CompactAsync(session, Small(CompactionStrategy.Summarization));

        Assert.Equal(session, seenBefore!.SessionId);
        Assert.Equal("manual", seenBefore.Reason);
        Assert.True(seenBefore.CompactableMessages > 0);
        Assert.Equal(result, seenAfter);
    }

    [DatabaseFact]
    public async Task AutoCompaction_SixtyRunsWithASmallWindow_NeverSendsARequestOverTheWindow()
    {
        const int window = 4000;
        var claudeOptions = new FakeClaudeServerOptions { ContextWindow = window };
        await using var h = await Harness.StartAsync(db, claudeOptions, o =>
        {
            o.AutoCompaction = true;
            o.Compaction = new CompactionOptions { MaxTokensForModel = window, Trigger = 0.8, TargetTokens = 1500, ProtectedTokens = 600, PreserveLastN = 2 };
        }, tools: Fetch());
        long largest = 0;
        var answered = 0;
        ScriptModel(h, r => { Interlocked.Increment(ref answered); largest = Math.Max(largest, r.InputTokens); });
        var agent = await h.AgentAsync(a => a with { Tools = ["fetch"] });
        var session = await h.Client.NewSessionAsync();

        for (var i = 0; i < 60; i++)
        {
            await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, $"question {i}"), $"run {i}");
        }

        // Every request reached the model (the fake refuses one over the window before answering), and none was over it.
        Assert.Equal(h.Claude.Requests.Count(r => r.IsMessagesCall), answered);
        Assert.True(largest <= window, $"a request of {largest} tokens was sent to a {window}-token window");
        var events = await h.Client.GetCompactionEventsAsync(session);
        Assert.NotEmpty(events);
        Assert.All(events, e => Assert.Equal("auto", e.Reason));
    }

    [DatabaseFact]
    public async Task AutoCompaction_WhenTheKeptPartAloneIsOverTheTrigger_IsSkipped_InsteadOfSummarisingBeforeEveryRequest()
    {
        // The newest 2 500 tokens are kept (ProtectedTokens) and the trigger is at 2 000: once the session is over the trigger,
        // compacting the older messages can never bring a request under it. Before, every request compacted again: a
        // summariser call for the one or two messages that had left the kept part since the last one.
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.AutoCompaction = true;
            o.Compaction = new CompactionOptions { MaxTokensForModel = 10_000, Trigger = 0.2, TargetTokens = 1_000, ProtectedTokens = 2_500, PreserveLastN = 0 };
        }, tools: Fetch());
        ScriptModel(h);
        var agent = await h.AgentAsync(a => a with { Tools = ["fetch"] });
        var session = await h.Client.NewSessionAsync();

        for (var i = 0; i < 16; i++)
        {
            await h.Client.RunFastSyncAsync(session, agent.Id, $"question {i}");
        }

        Assert.Equal(0, h.Claude.Requests.Count(IsSummarizer));
        Assert.Empty(await h.Client.GetCompactionEventsAsync(session));
        Assert.True((await h.Client.GetCompactionStatsAsync(session)).NeedsCompaction);
    }

    [DatabaseFact]
    public async Task AutoCompaction_PromptTooLong_CompactsAndRetries_InStreamingAndBatchMode()
    {
        var claudeOptions = new FakeClaudeServerOptions { ContextWindow = 2500 };
        await using var h = await Harness.StartAsync(db, claudeOptions, o =>
        {
            o.AutoCompaction = true;
            // A trigger the estimate never reaches: only Claude's "prompt is too long" starts the compaction.
            o.Compaction = new CompactionOptions { MaxTokensForModel = 1_000_000, TargetTokens = 500, ProtectedTokens = 200, PreserveLastN = 1 };
        }, tools: Fetch());
        ScriptModel(h);
        var agent = await h.AgentAsync(a => a with { Tools = ["fetch"] });
        var session = await h.Client.NewSessionAsync();
        for (var i = 0; i < 12; i++)
        {
            await Eventually.WithinAsync(i % 2 == 0
                ? h.Client.RunFastSyncAsync(session, agent.Id, $"question {i}")
                : h.Client.RunSyncAsync(session, agent.Id, $"question {i}"), $"run {i}");
        }

        var events = await h.Client.GetCompactionEventsAsync(session);
        Assert.NotEmpty(events);
        Assert.All(events, e => Assert.Equal("context_window", e.Reason));
    }

    [DatabaseFact]
    public async Task Summarization_OfAPrefixLargerThanTheSummarisersWindow_IsWrittenInParts_EachFoldingThePreviousSummary()
    {
        // The agent's model has a 1M-token window and the session grew past the summariser's (claude-haiku-4-5): here the
        // summariser's window is 8 000 tokens and the compacted part about 12 000. Before, the one summariser request was
        // refused ("prompt is too long") and the session could never be compacted.
        var claudeOptions = new FakeClaudeServerOptions { ContextWindow = 8_000 };
        claudeOptions.ModelContextWindows["claude-sonnet-4-5"] = 1_000_000;
        await using var h = await Harness.StartAsync(db, claudeOptions);
        var summaries = 0;
        long summarizerInput = 0;
        var prompts = new List<string>();
        h.Claude.Respond(request =>
        {
            if (!request.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal))
            {
                return FakeReply.Text("noted");
            }

            lock (prompts)
            {
                prompts.Add(request.LastUserText);
            }

            Interlocked.Add(ref summarizerInput, request.InputTokens);

            return FakeReply.Text($"SUMMARY {Interlocked.Increment(ref summaries)}");
        });
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        for (var i = 0; i < 6; i++)
        {
            await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, $"document {i}: " + new string('d', 8_000)), $"run {i}");
        }

        var result = await h.Client.CompactAsync(session, new CompactionOptions
        {
            Strategy = CompactionStrategy.Summarization,
            ProtectedTokens = 0,
            PreserveLastN = 0,
            MaxTokensForModel = 1_000_000,
            SummarizerMaxTokens = 1_000,
            UseTokenCountingApi = false,
        });

        Assert.True(result.SummaryCreated);
        Assert.Equal(11, result.MessagesRemoved);
        Assert.True(summaries >= 2, $"{summaries} summariser answers");
        var summary = Assert.Single(await h.Client.GetMessagesAsync(session), m => m.IsSummary);
        Assert.EndsWith($"SUMMARY {summaries}", Assert.Single(summary.Content).Text, StringComparison.Ordinal);
        Assert.Equal(Interlocked.Read(ref summarizerInput), result.Usage.InputTokens);   // the usage of every answered call
        // Each part after the first folds the summary of the parts before it; every document reached the summariser.
        for (var i = 1; i < prompts.Count; i++)
        {
            Assert.Contains($"<previous_context>\nSUMMARY {i}\n</previous_context>", prompts[i], StringComparison.Ordinal);
        }

        for (var i = 0; i < 5; i++)
        {
            Assert.Contains(prompts, p => p.Contains($"document {i}: ", StringComparison.Ordinal));
        }

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "after compaction"), "the run after compaction");
    }

    [DatabaseFact]
    public async Task Hybrid_CountsWhatPruningDocumentResultsSaves_AndPrunesWithoutASummary()
    {
        // A tool that returns a text document (an IContentTool result): its text form is one short line, its size the
        // document's. Before, pruning was credited with the short line only, so a summary was written although pruning the
        // documents brought the conversation far under TargetTokens.
        var reader = new ContentTool("read_file", () => ToolResult.FromContent(
            new Microsoft.Extensions.AI.DataContent(System.Text.Encoding.UTF8.GetBytes(new string('r', 8_000)), "text/plain")));
        await using var h = await Harness.StartAsync(db, null, start: true, reader);
        h.Claude.Respond(request => request.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal) ? FakeReply.Text("SUMMARY")
            : request.ToolResults.Count == 0 ? FakeReply.ToolUse("read_file", new { }) : FakeReply.Text("read it"));
        var agent = await h.AgentAsync(a => a with { Tools = ["read_file"] });
        var session = await h.Client.NewSessionAsync();
        for (var i = 0; i < 4; i++)
        {
            await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, $"read file {i}"), $"run {i}");
        }

        var requestsBefore = h.Claude.Requests.Count;
        var stats = await h.Client.GetCompactionStatsAsync(session);
        Assert.True(stats.TotalTokens > 8_000, $"{stats.TotalTokens} tokens");

        var result = await h.Client.CompactAsync(session, Small(target: 4_000));

        Assert.False(result.SummaryCreated);
        Assert.Equal(0, result.MessagesRemoved);
        Assert.Equal(3, result.MessagesPruned);
        Assert.True(result.CompactedTokens < 4_000, $"{result.CompactedTokens} tokens after");
        Assert.DoesNotContain(h.Claude.Requests.Skip(requestsBefore), r => r.IsMessagesCall);
        var results = (await h.Client.GetMessagesAsync(session)).SelectMany(m => m.Content).Where(b => b.Type == ContentTypes.ToolResult).ToList();
        Assert.Equal(3, results.Count(b => b.ToolContent == "[TOOL OUTPUT PRUNED]" && b.ToolContentBlocks.Count == 0));
        Assert.True((await h.Client.GetCompactionStatsAsync(session)).TotalTokens < 4_000);
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "after pruning"), "the run after pruning");
    }

    [DatabaseFact]
    public async Task AutoCompaction_ASummaryStreamingLongerThanRescueTimeout_IsProgress_TheRunIsNotRescued()
    {
        // The worker compacts before its run's request; the summariser's answer streams for ~6 s, twice the rescue timeout.
        // Before, nothing marked the run alive meanwhile: the leader rescued it mid-compaction and a second worker compacted
        // and requested again. Progress is marked every timeout/4 (see RescueTests.LiveStreamOfThinkingAndToolInputWithoutText).
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions(), o =>
        {
            o.InstanceTtl = TimeSpan.FromSeconds(2);
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(200);
            o.CleanupInterval = TimeSpan.FromMilliseconds(300);
            o.RunRescue.Interval = TimeSpan.FromMilliseconds(200);
            o.RunRescue.Timeout = TimeSpan.FromSeconds(3);
            o.AutoCompaction = true;
            o.Compaction = new CompactionOptions { MaxTokensForModel = 4_000, Trigger = 0.8, TargetTokens = 1_000, ProtectedTokens = 100, PreserveLastN = 0 };
        });
        var summaries = 0;
        h.Claude.Respond(request =>
        {
            if (!request.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal))
            {
                return FakeReply.Text("noted");
            }

            Interlocked.Increment(ref summaries);
            // 16 characters per delta, 150 ms per event: ~40 deltas ≈ 6 s.
            return FakeReply.Text(string.Concat(Enumerable.Repeat("summary text....", 40))) with { EventDelay = TimeSpan.FromMilliseconds(150) };
        });
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "a long document: " + new string('d', 14_000)), "the first run");

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "and now?"), "the run that compacts first");

        Assert.Equal("noted", response.Text);
        Assert.Equal(0, (await h.Client.GetRunAsync(response.RunId)).RescueAttempts);
        Assert.Equal(1, summaries);
        Assert.Equal("auto", Assert.Single(await h.Client.GetCompactionEventsAsync(session)).Reason);
    }

    [DatabaseFact]
    public async Task Stats_OfASessionLargerThanTheCountingModelsWindow_TakeClaudesFigure_AndOtherSessionsAreStillCounted()
    {
        // count_tokens counts with the summariser model, whose window (here 8 000 tokens) a session on the 1M window outgrows:
        // Claude answers "prompt is too long: N tokens > 8000 maximum". Before, that answer was taken for a broken endpoint
        // and the client stopped counting for every session, for good.
        var claudeOptions = new FakeClaudeServerOptions { ContextWindow = 8_000 };
        claudeOptions.ModelContextWindows["claude-sonnet-4-5"] = 1_000_000;
        await using var h = await Harness.StartAsync(db, claudeOptions);
        h.Claude.Respond(_ => FakeReply.Text("noted"));
        var agent = await h.AgentAsync();
        var large = await h.Client.NewSessionAsync();
        for (var i = 0; i < 5; i++)
        {
            await Eventually.WithinAsync(h.Client.RunFastSyncAsync(large, agent.Id, $"document {i}: " + new string('d', 8_000)), $"run {i}");
        }

        var small = await h.Client.NewSessionAsync();
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(small, agent.Id, "hello"), "the small session's run");

        var largeStats = await h.Client.GetCompactionStatsAsync(large);
        var counted = CountTokensCalls(h);
        var smallStats = await h.Client.GetCompactionStatsAsync(small);

        Assert.InRange(largeStats.TotalTokens, 10_000, 10_100);   // Claude's N: five documents of 8 000 characters, ~2 000 tokens each
        Assert.Equal(counted + 1, CountTokensCalls(h));
        Assert.Equal(2, smallStats.TotalMessages);

        static int CountTokensCalls(Harness h) => h.Claude.Requests.Count(r => r.Path.EndsWith("/count_tokens", StringComparison.Ordinal));
    }

    private sealed class ContentTool(string name, Func<ToolResult> result) : IContentTool
    {
        public string Name { get; } = name;

        public string Description => "Returns a document";

        public ToolSchema InputSchema { get; } = new();

        public Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken) => Task.FromResult(result());
    }

    private static bool IsSummarizer(Testing.RecordedRequest request)
        => request.Body is { } body && body.TryGetProperty("system", out var s) && s.ValueKind == JsonValueKind.String
           && s.GetString()!.StartsWith(SummarizerPrompt, StringComparison.Ordinal);

    private static bool IsChildRun(Harness h, Guid runId) => h.Client.GetRunAsync(runId).GetAwaiter().GetResult().Depth > 0;

    private static IReadOnlyList<string> AgentPgClientOptionsErrors(AgentPgOptions options) => options.Validate();

    private async Task<List<Guid>> ArchivedIdsAsync(Guid eventId)
    {
        await using var command = db.DataSource.CreateCommand($"SELECT id FROM \"{db.Schema}\".agentpg_message_archive WHERE compaction_event_id = $1");
        command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = eventId });
        var ids = new List<Guid>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            ids.Add(reader.GetGuid(0));
        }

        return ids;
    }
}
