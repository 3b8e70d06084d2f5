using System.Collections.Concurrent;
using AgentPg.Diagnostics;
using Microsoft.Extensions.Logging;

namespace AgentPg.Runs;

/// <summary>OnToolStart/OnToolComplete callbacks of runs created by this instance (and of their child runs).</summary>
/// <remarks>Callbacks live in memory: they fire when this instance executes a tool of the run, or learns that a child
/// run it is waiting for finished. Each fires on the thread pool; an exception is logged, never propagated.</remarks>
internal sealed class RunCallbacks(ILogger logger)
{
    private readonly ConcurrentDictionary<Guid, Entry> _entries = new();

    public void Register(Guid runId, RunOptions? options)
    {
        if (options?.OnToolStart is not null || options?.OnToolComplete is not null)
        {
            _entries[runId] = new Entry(options.OnToolStart, options.OnToolComplete);
        }
    }

    /// <summary>Makes a child run fire its parent's callbacks.</summary>
    public void Inherit(Guid parentRunId, Guid childRunId)
    {
        if (_entries.TryGetValue(parentRunId, out var entry))
        {
            _entries.TryAdd(childRunId, entry);
        }
    }

    public bool Has(Guid runId) => _entries.ContainsKey(runId);

    public void Remove(Guid runId) => _entries.TryRemove(runId, out _);

    public void FireStart(ToolCallEvent e)
    {
        if (_entries.TryGetValue(e.RunId, out var entry) && entry.OnStart is { } callback)
        {
            Fire(callback, e, "OnToolStart");
        }
    }

    public void FireComplete(ToolCallEvent e)
    {
        if (_entries.TryGetValue(e.RunId, out var entry) && entry.OnComplete is { } callback)
        {
            Fire(callback, e, "OnToolComplete");
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

    private sealed record Entry(Action<ToolCallEvent>? OnStart, Action<ToolCallEvent>? OnComplete);
}
