using System.Runtime.CompilerServices;
using System.Text.Json;
using AgentPg.Internal;
using AgentPg.Runs.Events;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Streams what happens in a run and its descendants — state changes, iterations, text and thinking as Claude writes
    /// it, stored messages, tool calls, approval requests — ending after the run's <see cref="RunFinishedEvent"/>.</summary>
    /// <param name="runId">The run to watch (a root run or a child run).</param>
    /// <param name="afterSequence">Resume point: only events with a greater <see cref="RunEvent.Sequence"/> are delivered (0: from the
    /// start).</param>
    /// <param name="cancellationToken">Stops watching; the run itself goes on.</param>
    /// <returns>The events in sequence order, without gaps or duplicates.</returns>
    /// <remarks>
    /// <para>Works on any client, started or not, for runs processed by any instance. A watcher that starts late first receives
    /// what already happened: the events recorded since the root run was first watched, or — for a run nobody watched before —
    /// a replay built from the stored states, messages and tool calls (coalesced: a run's past states are its creation and its
    /// current state; earlier text arrives as the stored messages). Text streamed so far in the iteration in progress arrives as
    /// one delta shortly after.</para>
    /// <para>A watched run costs its workers a few small writes per iteration and coalesced deltas (every 50 ms or 2 KB); a run
    /// nobody watches costs nothing measurable. Events can be replayed until <see cref="AgentPgOptions.RunEventRetention"/>
    /// after the root run finished; a watch whose events the leader deletes before it read them ends without the
    /// <see cref="RunFinishedEvent"/> (watch again for a replay from the stored messages).</para>
    /// <para>The stored message is authoritative: deltas lost to a database error are not repeated. An
    /// <see cref="IterationStartedEvent"/> repeating a number already seen means the model call was retried: discard that
    /// iteration's text received so far.</para>
    /// </remarks>
    /// <exception cref="AgentPgException">The run does not exist (<see cref="AgentPgErrorCode.RunNotFound"/>), or the schema is
    /// not migrated, or was dropped while watching (<see cref="AgentPgErrorCode.SchemaVersionMismatch"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="afterSequence"/> is negative.</exception>
    /// <exception cref="ObjectDisposedException">The client is disposed, or was disposed while watching.</exception>
    public async IAsyncEnumerable<RunEvent> WatchRunAsync(Guid runId, long afterSequence = 0,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(afterSequence);
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _schemaCheck.EnsureAsync("WatchRun", null, cancellationToken).ConfigureAwait(false);
        await EnsureListenerAsync(cancellationToken).ConfigureAwait(false);
        var root = await RegisterWatchAsync(runId, cancellationToken).ConfigureAwait(false) ?? throw RunNotFound(runId, "WatchRun");
        // The watched run and the descendants found so far (a child run's first event names its parent): a child run's watch
        // reads from the start, to find the descendants created before afterSequence.
        HashSet<Guid>? subtree = runId == root ? null : [runId];
        // Every event up to this sequence was processed: the events of the feed and of the database reads are in sequence
        // order, and a watcher that attaches after reading from the database may find some of them in the feed again.
        var seen = subtree is null ? afterSequence : 0;
        var feed = _feeds.Acquire(root, seen, out var cursor);
        try
        {
            var batch = new List<FeedEntry>();
            while (true)
            {
                batch.Clear();
                Task changed;
                bool ended;
                AgentPgException? fault = null;
                FeedPage? missed = null;
                if (cursor is null)
                {
                    // The feed dropped events this watcher needs (every watcher attached had read them): it reads them from the
                    // database, a page at a time, then attaches where they end.
                    try
                    {
                        missed = await feed.ReadPageAsync(seen, cancellationToken).ConfigureAwait(false)
                            ?? throw new ObjectDisposedException(nameof(AgentPgClient), "The AgentPgClient was disposed while watching the run.");
                    }
                    catch (AgentPgException schemaGone)
                    {
                        // As for the feed's own read: this watcher gets the exception below.
                        fault = schemaGone;
                    }

                    batch.AddRange(missed?.Entries ?? []);
                    (changed, ended) = (Task.CompletedTask, missed?.RootFinished ?? false);
                }
                else
                {
                    (changed, ended, fault, var closed) = feed.Read(cursor, batch);
                    if (closed)
                    {
                        // The client was disposed while watching: its feeds stopped reading (before, a watch went on polling with a
                        // data source the host may have disposed, and never returned).
                        throw new ObjectDisposedException(nameof(AgentPgClient), "The AgentPgClient was disposed while watching the run.");
                    }
                }

                foreach (var (e, parent) in batch)
                {
                    if (e.Sequence <= seen)
                    {
                        continue;
                    }

                    seen = e.Sequence;
                    if (subtree is not null)
                    {
                        if (!subtree.Contains(e.RunId))
                        {
                            if (parent is not { } p || !subtree.Contains(p))
                            {
                                continue;
                            }

                            subtree.Add(e.RunId);
                        }
                    }

                    var last = e is RunFinishedEvent && e.RunId == runId;
                    if (e.Sequence > afterSequence)
                    {
                        yield return e;
                    }

                    if (last)
                    {
                        // Delivered now or before afterSequence: nothing of the watched run follows its finish. (A child run's
                        // watch resumed after its finish used to wait for the root run's.)
                        yield break;
                    }
                }

                if (missed is { } page)
                {
                    if (ended)
                    {
                        // The root finished (or its events expired) and everything was read.
                        yield break;
                    }

                    // Past rows of kinds this version does not materialize too.
                    seen = Math.Max(seen, page.LastSequence);
                    if (page.Rows < RunEventFeed.MaxPage)
                    {
                        // Caught up with the database: from here on the feed holds what comes next (or null again if the feed
                        // read and dropped more meanwhile).
                        cursor = feed.Attach(seen);
                    }

                    continue;
                }

                if (batch.Count == 0)
                {
                    if (fault is not null)
                    {
                        // The schema went away while watching: every watcher of the feed gets an exception of its own.
                        throw new AgentPgException(fault.Code, fault.Operation, fault.Message, fault.InnerException) { Context = fault.Context, RunId = runId };
                    }

                    if (ended)
                    {
                        // The root finished and everything was read: a finish of the watched run is no longer recorded
                        // (its events expired) or was delivered before afterSequence.
                        yield break;
                    }

                    await changed.WaitAsync(cancellationToken).ConfigureAwait(false);
                }
            }
        }
        finally
        {
            _feeds.Release(feed, cursor);
        }
    }

    /// <summary>The root runs this client currently reads events of (one reader per root run, whatever the number of watchers).</summary>
    internal int ActiveEventFeeds => _feeds.Count;

    /// <summary>The events this client's feeds hold in memory for watchers that have not read them yet.</summary>
    internal int RetainedEvents => _feeds.RetainedEvents;

    private async Task<Guid?> RegisterWatchAsync(Guid runId, CancellationToken cancellationToken)
    {
        try
        {
            return await Transient.RetryAsync(ct => _sql.RunEvents.WatchAsync(_dataSource, runId, ct), _time, cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException ex) when (_schemaCheck.Invalidate(ex))
        {
            // The schema was dropped or rolled back after the check: say how to migrate, not "relation does not exist".
            if (await _schemaCheck.TranslateAsync("WatchRun", ex, cancellationToken).ConfigureAwait(false) is { } mismatch)
            {
                throw mismatch;
            }

            throw;
        }
    }

    /// <summary>The feeds' judgment of a failed read: the schema is gone (the watches end with
    /// <see cref="AgentPgErrorCode.SchemaVersionMismatch"/>), or null to keep trying.</summary>
    private async Task<AgentPgException?> EventReadFaultAsync(Exception exception)
        => _schemaCheck.Invalidate(exception)
            ? await _schemaCheck.TranslateAsync("WatchRun", exception, CancellationToken.None).ConfigureAwait(false)
            : null;

    /// <summary>Reads and materializes one page of a root run's events (the feed's reader).</summary>
    private async Task<FeedPage> ReadEventPageAsync(Guid rootRunId, long afterSequence, CancellationToken cancellationToken)
    {
        var rows = await _sql.RunEvents.PageAsync(_dataSource, rootRunId, afterSequence, RunEventFeed.MaxPage, cancellationToken).ConfigureAwait(false);
        if (rows.Count == 0 && !await _sql.RunEvents.HeadExistsAsync(_dataSource, rootRunId, cancellationToken).ConfigureAwait(false))
        {
            // The watch registered the head, so it is gone with the events: the leader's retention deleted them (the root run
            // finished RunEventRetention ago), or the run was deleted. Nothing will be appended any more: the watch ends,
            // as for a finish that is no longer recorded (before, it waited forever).
            return new FeedPage([], RootFinished: true);
        }

        var messageIds = rows.Where(r => r.Kind == "message" && r.RefId is not null).Select(r => r.RefId!.Value).ToList();
        var messages = new Dictionary<Guid, Message>();
        if (messageIds.Count > 0)
        {
            foreach (var message in await _sql.Messages.ByIdsAsync(_dataSource, messageIds, cancellationToken).ConfigureAwait(false))
            {
                messages[message.Id] = message;
            }
        }

        var entries = new List<FeedEntry>(rows.Count);
        var rootFinished = false;
        foreach (var row in rows)
        {
            var e = await MaterializeAsync(rootRunId, row, messages, cancellationToken).ConfigureAwait(false);
            if (e is not null)
            {
                entries.Add(new FeedEntry(e, row.ParentRunId));
            }

            rootFinished |= row.Kind == "finished" && row.RunId == rootRunId;
        }

        return new FeedPage(entries, rootFinished, rows.Count, rows.Count > 0 ? rows[^1].Sequence : 0);
    }

    private async Task<RunEvent?> MaterializeAsync(Guid rootRunId, RunEventRow row, Dictionary<Guid, Message> messages, CancellationToken cancellationToken)
    {
        using var data = JsonDocument.Parse(row.Data);
        var d = data.RootElement;
        var sessionId = row.SessionId ?? Guid.Empty;
        switch (row.Kind)
        {
            case "state":
                return new RunStateChangedEvent
                {
                    RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                    State = DbEnums.ParseRunState(d.GetProperty("state").GetString()!),
                    PreviousState = d.TryGetProperty("previous_state", out var previous) && previous.ValueKind == JsonValueKind.String
                        ? DbEnums.ParseRunState(previous.GetString()!)
                        : null,
                };
            case "iteration":
                return new IterationStartedEvent
                {
                    RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                    IterationNumber = d.GetProperty("iteration_number").GetInt32(),
                };
            case "text" or "thinking":
                // Both deltas carry the same data: the iteration, the block and the text to append.
                var (iteration, block, delta) = (d.GetProperty("iteration_number").GetInt32(), d.GetProperty("block_index").GetInt32(),
                    d.GetProperty("text").GetString() ?? "");
                return row.Kind == "text"
                    ? new TextDeltaEvent
                    {
                        RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                        IterationNumber = iteration, BlockIndex = block, Text = delta,
                    }
                    : new ThinkingDeltaEvent
                    {
                        RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                        IterationNumber = iteration, BlockIndex = block, Thinking = delta,
                    };
            case DeltaStream.ToolInput:
                // Appended with the deltas' function: the text is the call's id and name with the piece of input (DeltaStream.ToolInputText).
                using (var call = JsonDocument.Parse(d.GetProperty("text").GetString() ?? "{}"))
                {
                    var i = call.RootElement;
                    return new ToolInputDeltaEvent
                    {
                        RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                        IterationNumber = d.GetProperty("iteration_number").GetInt32(), BlockIndex = d.GetProperty("block_index").GetInt32(),
                        ToolUseId = i.TryGetProperty("id", out var toolUseId) ? toolUseId.GetString() ?? "" : "",
                        ToolName = i.TryGetProperty("name", out var toolName) ? toolName.GetString() ?? "" : "",
                        PartialJson = i.TryGetProperty("partial_json", out var partial) ? partial.GetString() ?? "" : "",
                    };
                }

            case "model_unavailable":
                // Appended with the deltas' function: the text is the wait, as JSON (DeltaPublisher.ModelUnavailableAsync).
                using (var wait = JsonDocument.Parse(d.GetProperty("text").GetString() ?? "{}"))
                {
                    var w = wait.RootElement;
                    return new ModelUnavailableEvent
                    {
                        RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                        IterationNumber = d.GetProperty("iteration_number").GetInt32(),
                        Error = w.TryGetProperty("error", out var error) ? error.GetString() ?? "" : "",
                        Wait = TimeSpan.FromMilliseconds(w.TryGetProperty("wait_ms", out var ms) ? ms.GetDouble() : 0),
                        FailingFor = TimeSpan.FromMilliseconds(w.TryGetProperty("failing_for_ms", out var since) ? since.GetDouble() : 0),
                    };
                }

            case "message":
                return new MessageStoredEvent
                {
                    RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                    Message = row.RefId is { } messageId && messages.TryGetValue(messageId, out var message) ? message : null,
                };
            case "tool_started":
                return new ToolCallStartedEvent
                {
                    RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                    ToolExecutionId = row.RefId ?? Guid.Empty,
                    ToolName = row.ToolName ?? "",
                    Input = row.ToolInput is { } input ? ToolExecutionSql.ParseJson(input) : default,
                    IsAgentTool = row.IsAgentTool,
                    ChildRunId = d.TryGetProperty("child_run_id", out var child) && child.ValueKind == JsonValueKind.String ? child.GetGuid() : row.ChildRunId,
                };
            case "approval_requested":
                return new ApprovalRequestedEvent
                {
                    RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                    ToolExecutionId = row.RefId ?? Guid.Empty,
                    ToolName = row.ToolName ?? "",
                    Input = row.ToolInput is { } requested ? ToolExecutionSql.ParseJson(requested) : default,
                };
            case "tool_completed":
                return new ToolCallCompletedEvent
                {
                    RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                    ToolExecutionId = row.RefId ?? Guid.Empty,
                    ToolName = row.ToolName ?? "",
                    Output = row.ToolState == "skipped" || (row.IsError && string.IsNullOrEmpty(row.ToolOutput))
                        ? row.ToolError ?? row.ToolOutput ?? ""
                        : row.ToolOutput ?? "",
                    IsError = row.IsError || row.ToolState == "skipped",
                    Duration = row.ToolStartedAt is { } started && row.ToolCompletedAt is { } completed ? completed - started : null,
                };
            case "finished":
                var state = DbEnums.ParseRunState(d.GetProperty("state").GetString()!);
                Response? response = null;
                if (state == RunState.Completed && await FindRunAsync(row.RunId, cancellationToken).ConfigureAwait(false) is { State: RunState.Completed } run)
                {
                    response = await BuildResponseAsync(run, cancellationToken).ConfigureAwait(false);
                }

                return new RunFinishedEvent
                {
                    RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                    State = state,
                    Response = response,
                    Error = state == RunState.Completed ? null : row.RunError ?? (state == RunState.Cancelled ? "cancelled" : "failed"),
                };
            default:
                // A kind from a newer version: skipped, its sequence simply not delivered.
                return null;
        }
    }
}
