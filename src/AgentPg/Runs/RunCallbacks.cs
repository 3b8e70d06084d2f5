using AgentPg.Diagnostics;
using AgentPg.Storage;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>OnToolStart/OnToolComplete callbacks of runs created by this instance (and of their child runs).</summary>
/// <remarks>
/// <para>Callbacks live in memory: they fire when this instance executes a tool of the run, or learns that a child run it
/// is waiting for finished. Each fires on the thread pool; an exception is logged, never propagated.</para>
/// <para>An entry is removed when this instance hears the run's <c>agentpg_run_finalized</c>. Entries whose notification
/// never comes (the creating transaction rolled back, the notification was lost, a producer that never listens) are swept:
/// whenever the table doubled since the last sweep (and at least <see cref="SweepThreshold"/> entries), or a minute
/// passed, one query looks the entries up; runs that are final go, runs not found go once two sweeps in a row did not
/// find them (a creating transaction still in progress keeps its entry), so the table holds only live runs.</para>
/// </remarks>
internal sealed class RunCallbacks(NpgsqlDataSource dataSource, Sql sql, TimeProvider time, ILogger logger)
{
    internal const int SweepThreshold = 256;
    private static readonly TimeSpan s_sweepInterval = TimeSpan.FromMinutes(1);

    private readonly Dictionary<Guid, Entry> _entries = [];
    private readonly Lock _lock = new();
    private int _sweepAt = SweepThreshold;
    private long _lastSweep = time.GetTimestamp();
    private int _sweeping;

    /// <summary>Gets how many runs have callbacks (tests check that it stays bounded).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Registers the callbacks of a run created by this client.</summary>
    /// <param name="runId">The run.</param>
    /// <param name="options">The run's options (nothing is registered without callbacks).</param>
    /// <param name="transactionId">The creating transaction when it is the caller's (not committed yet), else null.</param>
    public void Register(Guid runId, RunOptions? options, string? transactionId)
    {
        if (options?.OnToolStart is not null || options?.OnToolComplete is not null)
        {
            Add(runId, new Entry(options.OnToolStart, options.OnToolComplete, transactionId));
        }
    }

    /// <summary>Makes a child run fire its parent's callbacks.</summary>
    public void Inherit(Guid parentRunId, Guid childRunId)
    {
        Entry? parent;
        lock (_lock)
        {
            if (!_entries.TryGetValue(parentRunId, out parent) || _entries.ContainsKey(childRunId))
            {
                return;
            }
        }

        Add(childRunId, new Entry(parent.OnStart, parent.OnComplete, null));
    }

    public bool Has(Guid runId)
    {
        lock (_lock)
        {
            return _entries.ContainsKey(runId);
        }
    }

    public void Remove(Guid runId)
    {
        lock (_lock)
        {
            _entries.Remove(runId);
        }
    }

    public void FireStart(ToolCallEvent e)
    {
        if (TryGet(e.RunId) is { OnStart: { } callback })
        {
            Fire(callback, e, "OnToolStart");
        }
    }

    /// <summary>Gets the run's OnToolComplete now, for a worker about to commit the write that lets the run go on: from that
    /// commit the run may finish, and its entry go with its notification, before the worker fires the callback.</summary>
    public Action<ToolCallEvent>? OnComplete(Guid runId) => TryGet(runId)?.OnComplete;

    /// <summary>Fires the OnToolComplete of <paramref name="e"/>'s run: its entry's, or, when the entry went meanwhile (the run
    /// finished), <paramref name="taken"/> (from <see cref="OnComplete"/> before the commit).</summary>
    public void FireComplete(ToolCallEvent e, Action<ToolCallEvent>? taken = null)
    {
        if ((TryGet(e.RunId)?.OnComplete ?? taken) is { } callback)
        {
            Fire(callback, e, "OnToolComplete");
        }
    }

    /// <summary>OnToolComplete of an agent tool whose child run finished (on any instance): the trigger completed the parent's
    /// execution; its event is read back and handed to the parent run's callback. Fire and forget.</summary>
    /// <remarks>The callback is taken now, when the child's notification arrives, not after the read: the parent cannot have
    /// finished yet (its execution completed with the child), but it may finish, and its entry go with its own notification,
    /// before the read returns.</remarks>
    public void FireAgentToolComplete(Guid parentRunId, Guid childRunId)
    {
        if (TryGet(parentRunId) is { OnComplete: { } callback })
        {
            _ = FireAgentToolCompleteAsync(callback, childRunId);
        }
    }

    private async Task FireAgentToolCompleteAsync(Action<ToolCallEvent> callback, Guid childRunId)
    {
        try
        {
            if (await ToolExecutionSql.ReadAgentToolEventAsync(dataSource, sql, childRunId, CancellationToken.None).ConfigureAwait(false) is { } e)
            {
                Fire(callback, e, "OnToolComplete");
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
        {
            Log.CallbackFailed(logger, ex, "OnToolComplete", childRunId, "(agent tool)");
        }
    }

    /// <summary>Looks every entry up and removes those of runs that are final or do not exist.</summary>
    internal async Task SweepAsync(CancellationToken cancellationToken)
    {
        List<(Guid RunId, Entry Entry)> snapshot;
        lock (_lock)
        {
            snapshot = [.. _entries.Select(e => (e.Key, e.Value))];
        }

        if (snapshot.Count == 0)
        {
            return;
        }

        var found = new Dictionary<Guid, (string? State, string? Transaction)>(snapshot.Count);
        var command = sql.Runs.CallbackSweepCommand(dataSource, [.. snapshot.Select(e => e.RunId)], [.. snapshot.Select(e => e.Entry.TransactionId)]);
        await using (command.ConfigureAwait(false))
        {
            var reader = await command.ExecuteReaderAsync(cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    var (runId, state, transaction) = RunSql.ReadCallbackSweep(reader);
                    found[runId] = (state, transaction);
                }
            }
        }

        lock (_lock)
        {
            foreach (var (runId, entry) in snapshot)
            {
                if (!_entries.TryGetValue(runId, out var current) || !ReferenceEquals(current, entry) || !found.TryGetValue(runId, out var row))
                {
                    continue;
                }

                if (row.State is null && row.Transaction != "in progress")
                {
                    // Not found: rolled back, or committed just after the query's snapshot; the next sweep decides.
                    if (++entry.Misses >= 2)
                    {
                        _entries.Remove(runId);
                    }
                }
                else if (row.State is "completed" or "cancelled" or "failed")
                {
                    _entries.Remove(runId);
                }
                else
                {
                    entry.Misses = 0;
                }
            }

            _sweepAt = Math.Max(SweepThreshold, _entries.Count * 2);
            _lastSweep = time.GetTimestamp();
        }
    }

    private void Add(Guid runId, Entry entry)
    {
        bool sweep;
        lock (_lock)
        {
            _entries[runId] = entry;
            sweep = _entries.Count >= _sweepAt || time.GetElapsedTime(_lastSweep) >= s_sweepInterval;
        }

        if (sweep && Interlocked.CompareExchange(ref _sweeping, 1, 0) == 0)
        {
            _ = SweepInBackgroundAsync();
        }
    }

    private async Task SweepInBackgroundAsync()
    {
        try
        {
            await SweepAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            Log.CallbackSweepFailed(logger, ex);
            lock (_lock)
            {
                // Try again at the next registration after a while, not at every one.
                _lastSweep = time.GetTimestamp();
                _sweepAt = Math.Max(SweepThreshold, _entries.Count * 2);
            }
        }
        finally
        {
            Volatile.Write(ref _sweeping, 0);
        }
    }

    private Entry? TryGet(Guid runId)
    {
        lock (_lock)
        {
            return _entries.TryGetValue(runId, out var entry) ? entry : null;
        }
    }

    private void Fire(Action<ToolCallEvent> callback, ToolCallEvent e, string name)
        => ThreadPool.UnsafeQueueUserWorkItem(
            state =>
            {
                try
                {
                    callback(state);
                }
                catch (Exception ex)
                {
                    Log.CallbackFailed(logger, ex, name, state.RunId, state.ToolName);
                }
            },
            e,
            preferLocal: false);

    private sealed class Entry(Action<ToolCallEvent>? onStart, Action<ToolCallEvent>? onComplete, string? transactionId)
    {
        public Action<ToolCallEvent>? OnStart { get; } = onStart;

        public Action<ToolCallEvent>? OnComplete { get; } = onComplete;

        public string? TransactionId { get; } = transactionId;

        public int Misses { get; set; }
    }
}
