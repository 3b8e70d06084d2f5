namespace AgentPg.Runs;

/// <summary>Wakes <see cref="AgentPgClient.WaitForRunAsync"/> callers when a run is finalized (NOTIFY), on any instance.</summary>
/// <remarks>An entry exists only while someone waits: every caller holds a <see cref="Waiter"/> for the time of one read and
/// one wait and disposes it; the last one out removes the entry. A signal removes the entry at once (later waiters get a
/// new one), so nothing stays behind for runs that finished, do not exist, or whose waiters gave up.
/// <para>The fallback for a lost notification is shared as well (<see cref="PollAsync"/>): one statement per poll interval
/// reads the states of every run waited on, however many callers wait, instead of one read per caller.</para></remarks>
internal sealed class RunWaiters
{
    private readonly Dictionary<Guid, Entry> _waiters = [];
    private readonly Lock _lock = new();
    private readonly Func<IReadOnlyList<Guid>, CancellationToken, Task<IReadOnlyDictionary<Guid, RunState?>>> _readStates;
    private readonly SharedPoll<IReadOnlyDictionary<Guid, RunState?>> _poll;

    /// <summary>Creates the waiters of one client.</summary>
    /// <param name="readStates">Reads the states of the given runs (null: the run does not exist).</param>
    /// <param name="time">The clock of the poll interval.</param>
    /// <param name="pollInterval">The poll interval.</param>
    public RunWaiters(Func<IReadOnlyList<Guid>, CancellationToken, Task<IReadOnlyDictionary<Guid, RunState?>>> readStates, TimeProvider time,
        TimeSpan pollInterval)
    {
        _readStates = readStates;
        _poll = new SharedPoll<IReadOnlyDictionary<Guid, RunState?>>(PollCoreAsync, time, pollInterval);
    }

    /// <summary>Gets how many runs have waiters (tests check that it returns to zero).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _waiters.Count;
            }
        }
    }

    /// <summary>The signal for the run; acquire it before reading the run so a notification in between is not missed, and
    /// dispose it when done waiting.</summary>
    public Waiter Acquire(Guid runId)
    {
        lock (_lock)
        {
            if (!_waiters.TryGetValue(runId, out var entry))
            {
                entry = new Entry();
                _waiters.Add(runId, entry);
            }

            entry.References++;
            return new Waiter(this, runId, entry);
        }
    }

    public void Signal(Guid runId)
    {
        Entry? entry;
        lock (_lock)
        {
            if (!_waiters.Remove(runId, out entry))
            {
                return;
            }
        }

        entry.Signal.TrySetResult();
    }

    /// <summary>The states of every run waited on, read by the poll the callers of an interval share (<see cref="SharedPoll{T}"/>);
    /// runs it finds final or missing are signalled. Runs waited on since that poll started are not in it.</summary>
    /// <param name="cancellationToken">Stops this caller's wait for the poll; the poll itself goes on for the others.</param>
    public Task<IReadOnlyDictionary<Guid, RunState?>> PollAsync(CancellationToken cancellationToken) => _poll.GetAsync(cancellationToken);

    private async Task<IReadOnlyDictionary<Guid, RunState?>> PollCoreAsync()
    {
        Guid[] runIds;
        lock (_lock)
        {
            runIds = [.. _waiters.Keys];
        }

        var states = await _readStates(runIds, CancellationToken.None).ConfigureAwait(false);
        foreach (var (runId, state) in states)
        {
            if (state is not { } known || known.IsTerminal())
            {
                Signal(runId);
            }
        }

        return states;
    }

    /// <summary>After a lost LISTEN connection: everyone re-reads.</summary>
    public void SignalAll()
    {
        List<Entry> entries;
        lock (_lock)
        {
            entries = [.. _waiters.Values];
            _waiters.Clear();
        }

        foreach (var entry in entries)
        {
            entry.Signal.TrySetResult();
        }
    }

    private void Release(Guid runId, Entry entry)
    {
        lock (_lock)
        {
            if (--entry.References == 0 && _waiters.TryGetValue(runId, out var current) && ReferenceEquals(current, entry))
            {
                _waiters.Remove(runId);
            }
        }
    }

    /// <summary>One caller's hold on a run's signal.</summary>
    internal sealed class Waiter(RunWaiters owner, Guid runId, Entry entry) : IDisposable
    {
        private int _disposed;

        public Task Task => entry.Signal.Task;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.Release(runId, entry);
            }
        }
    }

    internal sealed class Entry
    {
        public TaskCompletionSource Signal { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public int References { get; set; }
    }
}
