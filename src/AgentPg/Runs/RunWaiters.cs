using System.Collections.Concurrent;

namespace AgentPg.Runs;

/// <summary>Wakes <see cref="AgentPgClient.WaitForRunAsync"/> callers when a run is finalized (NOTIFY), on any instance.</summary>
internal sealed class RunWaiters
{
    private readonly ConcurrentDictionary<Guid, TaskCompletionSource> _waiters = new();

    /// <summary>The signal for the run; get it before reading the run so a notification in between is not missed.</summary>
    public Task Get(Guid runId)
        => _waiters.GetOrAdd(runId, _ => new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;

    public void Signal(Guid runId)
    {
        if (_waiters.TryRemove(runId, out var tcs))
        {
            tcs.TrySetResult();
        }
    }

    /// <summary>After a lost LISTEN connection: everyone re-reads.</summary>
    public void SignalAll()
    {
        foreach (var runId in _waiters.Keys)
        {
            Signal(runId);
        }
    }
}
