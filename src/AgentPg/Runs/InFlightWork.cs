using System.Collections.Concurrent;

namespace AgentPg.Runs;

/// <summary>Cancellation handles of the work this instance is doing, by run, so a cancel (NOTIFY agentpg_run_finalized)
/// reaches in-flight streams and tools wherever they run.</summary>
internal sealed class InFlightWork
{
    private readonly ConcurrentDictionary<Guid, ConcurrentDictionary<CancellationTokenSource, byte>> _byRun = new();

    public IDisposable Register(Guid runId, CancellationTokenSource cts)
    {
        var set = _byRun.GetOrAdd(runId, _ => new ConcurrentDictionary<CancellationTokenSource, byte>());
        set[cts] = 0;
        return new Registration(this, runId, cts);
    }

    /// <summary>Cancels everything registered for the run; returns how many handles were cancelled.</summary>
    public int Cancel(Guid runId)
    {
        if (!_byRun.TryGetValue(runId, out var set))
        {
            return 0;
        }

        var count = 0;
        foreach (var cts in set.Keys)
        {
            try
            {
                cts.Cancel();
                count++;
            }
            catch (ObjectDisposedException)
            {
            }
        }

        return count;
    }

    private void Unregister(Guid runId, CancellationTokenSource cts)
    {
        if (_byRun.TryGetValue(runId, out var set) && set.TryRemove(cts, out _) && set.IsEmpty)
        {
            _byRun.TryRemove(new KeyValuePair<Guid, ConcurrentDictionary<CancellationTokenSource, byte>>(runId, set));
        }
    }

    private sealed class Registration(InFlightWork owner, Guid runId, CancellationTokenSource cts) : IDisposable
    {
        public void Dispose() => owner.Unregister(runId, cts);
    }
}
