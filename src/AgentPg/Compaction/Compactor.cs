using System.Text.Json;
using AgentPg.Claude;
using AgentPg.Diagnostics;
using AgentPg.Runs;
using AgentPg.Storage;
using Anthropic;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;
using Npgsql;

namespace AgentPg.Compaction;

/// <summary>Compacts a session's root conversation (see <see cref="ConversationPartition"/> for what may be rewritten).</summary>
/// <remarks>
/// <para>Read, then decide and summarise with no transaction open (the summariser is a model call), then write in one
/// transaction that locks the session row and checks that nothing it read has changed: the compaction count, and every
/// message it rewrites still there. Two compactions of one session therefore never both apply: the second finds the
/// count changed and reports it (<see cref="AgentPgErrorCode.CompactionFailed"/>), having written nothing.</para>
/// <para>Delegated runs' messages are not part of the root conversation and are never touched.</para>
/// </remarks>
internal sealed class Compactor(Engine engine)
{
    public const string ReasonManual = "manual";
    public const string ReasonAuto = "auto";
    public const string ReasonContextWindow = "context_window";
    public const string ReasonRequestTooLarge = "request_too_large";

    private static readonly IReadOnlyDictionary<string, JsonElement> s_none = new Dictionary<string, JsonElement>();
    // After a transient count_tokens failure (the SDK has already retried it) this client estimates for a while.
    private static readonly TimeSpan s_countingPause = TimeSpan.FromMinutes(5);

    // When count_tokens may be tried again (UTC ticks): 0 = now; long.MaxValue = never (the endpoint refused this client).
    private long _countingPausedUntil;

    /// <summary>Whether the iteration about to be sent is over the trigger, by the estimate (no request is made for it).</summary>
    public bool IsOverTrigger(IterationContext context)
        => TokenEstimate.OfRequest(context.System, context.ToolsJson, context.History) >= engine.Options.Compaction.TriggerTokens;

    public async Task<CompactionStats> GetStatsAsync(Guid sessionId, CompactionOptions options, CancellationToken cancellationToken)
    {
        var state = await LoadAsync(sessionId, ownRun: null, cancellationToken).ConfigureAwait(false);
        var partition = await PartitionAsync(state, options, exact: true, cancellationToken).ConfigureAwait(false);
        return new CompactionStats
        {
            SessionId = sessionId,
            TotalMessages = partition.Messages.Count,
            TotalTokens = partition.Total,
            UsageFraction = (double)partition.Total / options.MaxTokensForModel,
            CompactionCount = state.CompactionCount,
            PreservedMessages = partition.Messages.Count - partition.PrefixLength,
            SummaryMessages = partition.Messages.Count(m => m.IsSummary),
            CompactableMessages = partition.CompactableCount,
            NeedsCompaction = partition.Total >= options.TriggerTokens,
        };
    }

    /// <summary>Compacts the session.</summary>
    /// <param name="sessionId">The session.</param>
    /// <param name="options">How.</param>
    /// <param name="reason">manual, auto, context_window or request_too_large.</param>
    /// <param name="ownRun">The root run the caller holds between two of its iterations: its messages may be compacted.</param>
    /// <param name="onlyIfNeeded">Return null when the conversation is under the trigger.</param>
    /// <param name="cancellationToken">Cancels the compaction (nothing is written once cancelled).</param>
    /// <param name="onProgress">Called as the summariser's answers stream (the worker of <paramref name="ownRun"/> marks its
    /// run alive with it, so a long summary does not look like a stalled run).</param>
    /// <param name="wait">For a run's automatic compaction: its summariser calls wait out an unavailable Claude as the run's
    /// model calls do (<see cref="AgentPgOptions.ModelUnavailableTimeout"/>). Null for an explicit compaction, which fails.</param>
    /// <returns>The result, or null when <paramref name="onlyIfNeeded"/> and not needed, or when an automatic compaction
    /// (<see cref="ReasonAuto"/>) could not bring the conversation under the trigger.</returns>
    public async Task<CompactionResult?> CompactAsync(Guid sessionId, CompactionOptions options, string reason, Guid? ownRun, bool onlyIfNeeded,
        CancellationToken cancellationToken, Action? onProgress = null, RunModelWait? wait = null)
    {
        var started = engine.Time.GetTimestamp();
        var state = await LoadAsync(sessionId, ownRun, cancellationToken).ConfigureAwait(false);
        var partition = await PartitionAsync(state, options, exact: reason == ReasonManual, cancellationToken).ConfigureAwait(false);
        if (onlyIfNeeded && partition.Total < options.TriggerTokens)
        {
            return null;
        }

        if (reason == ReasonAuto && (partition.CompactableCount == 0 || partition.Total - partition.PrefixTokens >= options.TriggerTokens))
        {
            // What compaction must keep (ProtectedTokens, PreserveLastN, a run in progress) is over the trigger on its own:
            // rewriting the rest cannot bring the request under it, and doing it anyway would summarise again before every
            // request. The context-window path still compacts when Claude says the prompt is too long.
            Log.AutoCompactionSkipped(engine.Logger, sessionId, partition.Total - partition.PrefixTokens, options.TriggerTokens);
            return null;
        }

        if (partition.CompactableCount == 0)
        {
            throw new AgentPgException(AgentPgErrorCode.NothingToCompact, "Compact",
                $"Session {sessionId} has nothing to compact: its {partition.Messages.Count} root messages ({partition.Total} tokens) are all within " +
                $"the protected part (ProtectedTokens = {options.ProtectedTokens}, PreserveLastN = {options.PreserveLastN}), marked preserved, " +
                "earlier summaries, or part of a run in progress. Nothing was changed.")
            { SessionId = sessionId };
        }

        await engine.Hooks.BeforeCompactionAsync(new CompactionContext
        {
            SessionId = sessionId,
            RunId = ownRun,
            Reason = reason,
            Strategy = options.Strategy,
            TotalTokens = partition.Total,
            CompactableMessages = partition.CompactableCount,
        }, cancellationToken).ConfigureAwait(false);

        var prune = options.Strategy == CompactionStrategy.Hybrid && !options.PreserveToolOutputs;
        var prefix = partition.Prefix.ToList();
        List<Guid> pruned = [];
        long saved = 0;
        if (prune)
        {
            // What pruning saves is each pruned tool_result's estimate (its text, or its images and documents) less that of
            // what is left (the placeholder, after an approver's note), in the partition's units.
            long estimatedSaving = 0;
            foreach (var message in prefix.Where(m => !m.IsSummary))
            {
                var prunable = false;
                foreach (var block in message.Content.Where(Summarizer.IsPrunable))
                {
                    prunable = true;
                    var left = TokenEstimate.Of(new ContentBlock { Type = ContentTypes.ToolResult, ToolContent = Summarizer.PrunedContent(block) });
                    estimatedSaving += Math.Max(0, TokenEstimate.Of(block) - left);
                }

                if (prunable)
                {
                    pruned.Add(message.Id);
                }
            }

            saved = (long)Math.Floor(estimatedSaving * partition.Scale);
        }

        string? summary = null;
        var usage = Usage.Zero;
        IReadOnlyList<Guid> removed = [];
        long after;
        if (prune && pruned.Count > 0 && partition.Total - saved <= options.TargetTokens)
        {
            after = partition.Total - saved;
        }
        else
        {
            var model = engine.Claude ?? throw new InvalidOperationException(
                "Compaction needs Claude to write the summary, and no API key is configured: set AgentPgOptions.ApiKey or ANTHROPIC_API_KEY.");
            var previous = Summarizer.Render(prefix.Where(m => m.IsSummary).Select(StripPreamble), pruneToolOutputs: false);
            var conversation = prefix.Where(m => !m.IsSummary).Select(m => Summarizer.Render([m], prune)).Where(t => t.Length > 0).ToList();
            (summary, usage) = await Summarizer.SummarizeInPartsAsync(model, options, sessionId, previous, conversation, onProgress, cancellationToken, wait)
                .ConfigureAwait(false);
            removed = [.. prefix.Select(m => m.Id)];
            pruned = [];
            after = partition.Total - partition.PrefixTokens + TokenEstimate.Of(Summarizer.SummaryPreamble + summary) + TokenEstimate.MessageOverhead;
        }

        var write = new CompactionWrite(
            Guid.CreateVersion7(), sessionId, options.Strategy == CompactionStrategy.Summarization ? "summarization" : "hybrid", reason,
            partition.Total, after, removed, pruned,
            [.. partition.Messages.Where(m => !removed.Contains(m.Id) && !pruned.Contains(m.Id)).Select(m => m.Id)],
            Summarizer.PrunedPlaceholder, Summarizer.ApprovalNotePrefix, Summarizer.RejectionPrefix, Guid.CreateVersion7(), summary is null ? null : Summarizer.SummaryPreamble + summary,
            summary is null ? null : options.SummarizerModel, usage, engine.Time.GetElapsedTime(started));
        await WriteAsync(state, write, cancellationToken).ConfigureAwait(false);

        var result = new CompactionResult
        {
            EventId = write.EventId,
            SessionId = sessionId,
            Strategy = options.Strategy,
            OriginalTokens = partition.Total,
            CompactedTokens = after,
            MessagesRemoved = removed.Count,
            MessagesPruned = pruned.Count,
            SummaryCreated = summary is not null,
            PreservedMessageIds = write.Preserved,
            Usage = usage,
            Duration = engine.Time.GetElapsedTime(started),
        };
        Log.Compacted(engine.Logger, sessionId, reason, result.OriginalTokens, result.CompactedTokens, result.MessagesRemoved, result.MessagesPruned);
        await engine.Hooks.AfterCompactionAsync(result, CancellationToken.None).ConfigureAwait(false);
        return result;
    }

    public async Task<IReadOnlyList<CompactionEvent>> GetEventsAsync(Guid sessionId, int limit, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            engine.Sql.Sessions.AddGet(batch, sessionId);
            engine.Sql.Compaction.AddEvents(batch, sessionId, limit);
            var reader = await batch.ExecuteReaderAsync(engine.DataSource, prepare: false, cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    throw SessionNotFound(sessionId, "GetCompactionEvents");
                }

                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                var events = new List<CompactionEvent>();
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    events.Add(CompactionSql.ReadEvent(reader));
                }

                return events;
            }
        }
    }

    public async Task RestoreAsync(Guid eventId, CancellationToken cancellationToken)
    {
        var connection = await engine.DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            await using (transaction.ConfigureAwait(false))
            {
                var found = await engine.Sql.Compaction.EventForRestoreAsync(connection, transaction, eventId, cancellationToken).ConfigureAwait(false)
                    ?? throw new AgentPgException(AgentPgErrorCode.CompactionNotFound, "RestoreCompaction", $"No compaction event has id {eventId}.");
                await engine.Sql.Compaction.LockSessionAsync(connection, transaction, found.SessionId, cancellationToken).ConfigureAwait(false);

                // Read again under the session lock: a concurrent restore or compaction may have committed meanwhile.
                found = (await engine.Sql.Compaction.EventForRestoreAsync(connection, transaction, eventId, cancellationToken).ConfigureAwait(false))!.Value;
                if (found.Restored)
                {
                    throw new AgentPgException(AgentPgErrorCode.CompactionFailed, "RestoreCompaction",
                        $"Compaction {eventId} of session {found.SessionId} was already restored.") { SessionId = found.SessionId };
                }

                if (found.LaterExists)
                {
                    throw new AgentPgException(AgentPgErrorCode.CompactionFailed, "RestoreCompaction",
                        $"Compaction {eventId} is not the latest compaction of session {found.SessionId} still in place: restore the later ones " +
                        "first (GetCompactionEventsAsync lists them, newest first).") { SessionId = found.SessionId };
                }

                await engine.Sql.Compaction.Restore(eventId, found.SummaryId).ExecuteAsync(transaction, cancellationToken).ConfigureAwait(false);

                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static Message StripPreamble(Message summary) => summary with
    {
        Content = [.. summary.Content.Select(b => b.Type == ContentTypes.Text && b.Text is { } t && t.StartsWith(Summarizer.SummaryPreamble, StringComparison.Ordinal)
            ? b with { Text = t[Summarizer.SummaryPreamble.Length..] }
            : b)],
    };

    private async Task<SessionState> LoadAsync(Guid sessionId, Guid? ownRun, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            engine.Sql.Sessions.AddGet(batch, sessionId);
            engine.Sql.Compaction.AddActiveRootRuns(batch, sessionId);
            engine.Sql.Messages.AddRootContext(batch, sessionId);
            var reader = await batch.ExecuteReaderAsync(engine.DataSource, prepare: false, cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                if (!await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    throw SessionNotFound(sessionId, "Compact");
                }

                var session = SessionSql.Read(reader);
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                var active = new HashSet<Guid>();
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    var runId = CompactionSql.ReadRunId(reader);
                    if (runId != ownRun)
                    {
                        active.Add(runId);
                    }
                }

                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                var messages = await MessageSql.ReadMessagesAsync(reader, cancellationToken).ConfigureAwait(false);
                return new SessionState(sessionId, session.CompactionCount, active, messages);
            }
        }
    }

    private async Task<ConversationPartition> PartitionAsync(SessionState state, CompactionOptions options, bool exact, CancellationToken cancellationToken)
    {
        long? total = null;
        if (exact && options.UseTokenCountingApi && state.Messages.Count > 0 && engine.Claude is { } model
            && engine.Time.GetUtcNow().UtcTicks >= Volatile.Read(ref _countingPausedUntil))
        {
            try
            {
                var body = new Dictionary<string, JsonElement>(StringComparer.Ordinal)
                {
                    ["model"] = JsonSerializer.SerializeToElement(options.SummarizerModel),
                    ["messages"] = JsonSerializer.SerializeToElement(RequestBuilder.Messages(state.Messages)),
                };
                var count = await model.Messages.CountTokens(MessageCountTokensParams.FromRawUnchecked(s_none, s_none, body), cancellationToken)
                    .ConfigureAwait(false);
                total = count.InputTokens;
            }
            catch (AnthropicBadRequestException ex) when (ContextWindowPolicy.IsPromptTooLong(ex.ApiMessage))
            {
                // The conversation is larger than the counting model's window (a session on the 1M-token window): the endpoint
                // works, and its answer says how large the conversation is when it can ("prompt is too long: N tokens > M
                // maximum"); otherwise this count is estimated. Other sessions are still counted.
                total = ContextWindowPolicy.PromptTokens(ex.ApiMessage);
            }
            catch (AnthropicContentTooLargeException ex)
            {
                // This conversation's bytes (images, documents) are over the endpoint's 32 MB: it is estimated, and the
                // endpoint still counts every other session.
                Log.TokenCountingTooLarge(engine.Logger, state.SessionId, ex.ApiMessage ?? ex.Message);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                // Counting is an optimisation, and a failing endpoint should not cost a request (and the SDK's retries) per
                // compaction: refused for this client (no access to it, a key without the permission, a proxy without the
                // route) → estimated from now on; unreachable or busy → estimated for a few minutes, then tried again.
                if (Runs.ModelRetries.Classify(ex) == Runs.ModelFailureKind.Permanent)
                {
                    Volatile.Write(ref _countingPausedUntil, long.MaxValue);
                    Log.TokenCountingFailed(engine.Logger, ex, state.SessionId);
                }
                else
                {
                    Volatile.Write(ref _countingPausedUntil, (engine.Time.GetUtcNow() + s_countingPause).UtcTicks);
                    Log.TokenCountingPaused(engine.Logger, ex, state.SessionId, (int)s_countingPause.TotalMinutes);
                }
            }
        }

        return ConversationPartition.Create(state.Messages, options, state.ActiveRuns, total);
    }

    private async Task WriteAsync(SessionState state, CompactionWrite write, CancellationToken cancellationToken)
    {
        var connection = await engine.DataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
        await using (connection.ConfigureAwait(false))
        {
            var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
            await using (transaction.ConfigureAwait(false))
            {
                var count = await engine.Sql.Compaction.LockSessionAsync(connection, transaction, state.SessionId, cancellationToken).ConfigureAwait(false)
                    ?? throw SessionNotFound(state.SessionId, "Compact");
                var rewritten = write.Removed.Concat(write.Pruned).ToList();
                if (count != state.CompactionCount
                    || await engine.Sql.Compaction.CountMessagesAsync(connection, transaction, state.SessionId, rewritten, cancellationToken).ConfigureAwait(false) != rewritten.Count)
                {
                    throw new AgentPgException(AgentPgErrorCode.CompactionFailed, "Compact",
                        $"Session {state.SessionId} changed while it was being compacted (another compaction, a restore or a regeneration " +
                        "committed first). Nothing was changed; check GetCompactionStatsAsync and compact again if it is still needed.")
                    { SessionId = state.SessionId };
                }

                await engine.Sql.Compaction.Write(write).ExecuteAsync(transaction, cancellationToken).ConfigureAwait(false);

                await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
            }
        }
    }

    private static AgentPgException SessionNotFound(Guid sessionId, string operation)
        => new(AgentPgErrorCode.SessionNotFound, operation, $"Session {sessionId} does not exist.") { SessionId = sessionId };

    private sealed record SessionState(Guid SessionId, int CompactionCount, IReadOnlySet<Guid> ActiveRuns, IReadOnlyList<Message> Messages);
}
