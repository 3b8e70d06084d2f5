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
    /// after the root run finished.</para>
    /// <para>The stored message is authoritative: deltas lost to a database error are not repeated. An
    /// <see cref="IterationStartedEvent"/> repeating a number already seen means the model call was retried: discard that
    /// iteration's text received so far.</para>
    /// </remarks>
    /// <exception cref="AgentPgException">The run does not exist (<see cref="AgentPgErrorCode.RunNotFound"/>).</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="afterSequence"/> is negative.</exception>
    public async IAsyncEnumerable<RunEvent> WatchRunAsync(Guid runId, long afterSequence = 0,
        [EnumeratorCancellation] CancellationToken cancellationToken = default)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(afterSequence);
        ObjectDisposedException.ThrowIf(_disposed, this);
        await EnsureListenerAsync(cancellationToken).ConfigureAwait(false);
        var root = await RegisterWatchAsync(runId, cancellationToken).ConfigureAwait(false) ?? throw RunNotFound(runId, "WatchRun");
        var feed = _feeds.Acquire(root);
        try
        {
            // The watched run and the descendants found so far (a child run's first event names its parent).
            HashSet<Guid>? subtree = runId == root ? null : [runId];
            var index = 0;
            var batch = new List<FeedEntry>();
            while (true)
            {
                batch.Clear();
                var (changed, ended) = feed.Read(index, batch);
                index += batch.Count;
                foreach (var (e, parent) in batch)
                {
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

                    if (e.Sequence <= afterSequence)
                    {
                        continue;
                    }

                    yield return e;
                    if (e is RunFinishedEvent && e.RunId == runId)
                    {
                        yield break;
                    }
                }

                if (batch.Count == 0)
                {
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
            _feeds.Release(feed);
        }
    }

    /// <summary>The root runs this client currently reads events of (one reader per root run, whatever the number of watchers).</summary>
    internal int ActiveEventFeeds => _feeds.Count;

    private async Task<Guid?> RegisterWatchAsync(Guid runId, CancellationToken cancellationToken)
    {
        return await Transient.RetryAsync(async ct =>
        {
            var command = Db.Command(_dataSource, null, _sql.RunEvents.Watch, P.Uuid(runId));
            await using (command.ConfigureAwait(false))
            {
                return await command.ExecuteScalarAsync(ct).ConfigureAwait(false) is Guid root ? root : (Guid?)null;
            }
        }, _time, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads and materializes one page of a root run's events (the feed's reader).</summary>
    private async Task<FeedPage> ReadEventPageAsync(Guid rootRunId, long afterSequence, CancellationToken cancellationToken)
    {
        var rows = new List<EventRow>();
        var command = Db.Command(_dataSource, null, _sql.RunEvents.Page, P.Uuid(rootRunId), P.Long(afterSequence), P.Int(RunEventFeed.MaxPage));
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    rows.Add(EventRow.Read(reader));
                }
            }
        }

        var messageIds = rows.Where(r => r.Kind == "message" && r.RefId is not null).Select(r => r.RefId!.Value).ToList();
        var messages = new Dictionary<Guid, Message>();
        if (messageIds.Count > 0)
        {
            var load = Db.Command(_dataSource, null, _sql.Messages.ByIds, P.UuidArray(messageIds));
            await using (load.ConfigureAwait(false))
            {
                var reader = await load.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    foreach (var message in await MessageSql.ReadMessagesAsync(reader, cancellationToken).ConfigureAwait(false))
                    {
                        messages[message.Id] = message;
                    }
                }
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

        return new FeedPage(entries, rootFinished);
    }

    private async Task<RunEvent?> MaterializeAsync(Guid rootRunId, EventRow row, Dictionary<Guid, Message> messages, CancellationToken cancellationToken)
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
            case "text":
                return new TextDeltaEvent
                {
                    RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                    IterationNumber = d.GetProperty("iteration_number").GetInt32(),
                    BlockIndex = d.GetProperty("block_index").GetInt32(),
                    Text = d.GetProperty("text").GetString() ?? "",
                };
            case "thinking":
                return new ThinkingDeltaEvent
                {
                    RunId = row.RunId, RootRunId = rootRunId, SessionId = sessionId, Depth = row.Depth, Sequence = row.Sequence, Timestamp = row.CreatedAt,
                    IterationNumber = d.GetProperty("iteration_number").GetInt32(),
                    BlockIndex = d.GetProperty("block_index").GetInt32(),
                    Thinking = d.GetProperty("text").GetString() ?? "",
                };
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

    private sealed record EventRow(long Sequence, Guid RunId, string Kind, Guid? RefId, string Data, DateTimeOffset CreatedAt, Guid? SessionId, int Depth,
        Guid? ParentRunId, string? RunError, string? ToolName, string? ToolInput, bool IsAgentTool, Guid? ChildRunId, string? ToolOutput, bool IsError,
        string? ToolError, DateTimeOffset? ToolStartedAt, DateTimeOffset? ToolCompletedAt, string? ToolState)
    {
        public static EventRow Read(NpgsqlDataReader r) => new(
            r.GetInt64(0), r.GetGuid(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetGuid(3), r.GetString(4), r.GetFieldValue<DateTimeOffset>(5),
            r.IsDBNull(6) ? null : r.GetGuid(6), r.IsDBNull(7) ? 0 : r.GetInt32(7), r.IsDBNull(8) ? null : r.GetGuid(8), r.IsDBNull(9) ? null : r.GetString(9),
            r.IsDBNull(10) ? null : r.GetString(10), r.IsDBNull(11) ? null : r.GetString(11), !r.IsDBNull(12) && r.GetBoolean(12),
            r.IsDBNull(13) ? null : r.GetGuid(13), r.IsDBNull(14) ? null : r.GetString(14), !r.IsDBNull(15) && r.GetBoolean(15),
            r.IsDBNull(16) ? null : r.GetString(16), r.IsDBNull(17) ? null : r.GetFieldValue<DateTimeOffset>(17),
            r.IsDBNull(18) ? null : r.GetFieldValue<DateTimeOffset>(18), r.IsDBNull(19) ? null : r.GetString(19));
    }
}
