using System.Collections.Concurrent;
using AgentPg.Diagnostics;
using AgentPg.Storage;
using Microsoft.Extensions.Logging;

namespace AgentPg.Runs.Events;

/// <summary>An event with the parent of its run, which a watcher of a child run needs to follow the descendants.</summary>
internal readonly record struct FeedEntry(RunEvent Event, Guid? ParentRunId);

/// <summary>One page read from the database: the materialized events, whether the root run's finish is among them, how many rows
/// it read and the sequence of the last (an event of a kind this version does not know is read but not materialized).</summary>
internal readonly record struct FeedPage(IReadOnlyList<FeedEntry> Entries, bool RootFinished, int Rows = 0, long LastSequence = 0);

/// <summary>The live event feeds of one client: one reader per watched root run, whatever the number of watchers, so many
/// watchers of one run cost one query per wake-up and share the materialized events.</summary>
/// <remarks>The fallback for a lost notification is shared too (<see cref="PollAsync"/>): one statement per poll interval
/// reads the latest sequence of every watched root run, and only the feeds behind it read a page.</remarks>
internal sealed class RunEventFeeds
{
    private readonly ConcurrentDictionary<Guid, RunEventFeed> _feeds = new();
    private readonly object _lock = new();
    private readonly Func<Guid, long, CancellationToken, Task<FeedPage>> _readPage;
    private readonly Func<IReadOnlyList<Guid>, CancellationToken, Task<IReadOnlyDictionary<Guid, long>>> _readLastSequences;
    private readonly Func<Exception, Task<AgentPgException?>> _fault;
    private readonly SharedPoll<IReadOnlyDictionary<Guid, long>> _poll;
    private readonly TimeSpan _pollInterval;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private bool _closed;

    /// <param name="readPage">Reads a page of a root run's events.</param>
    /// <param name="readLastSequences">Reads the latest sequence of root runs (the shared poll).</param>
    /// <param name="pollInterval">The fallback poll's interval.</param>
    /// <param name="time">The clock.</param>
    /// <param name="logger">Logs failed reads.</param>
    /// <param name="fault">After a failed read: the exception that ends the watches (the schema is gone), or null to keep
    /// trying (the database may be restarting). Without it, the feeds always keep trying.</param>
    public RunEventFeeds(Func<Guid, long, CancellationToken, Task<FeedPage>> readPage,
        Func<IReadOnlyList<Guid>, CancellationToken, Task<IReadOnlyDictionary<Guid, long>>> readLastSequences, TimeSpan pollInterval,
        TimeProvider time, ILogger logger, Func<Exception, Task<AgentPgException?>>? fault = null)
    {
        (_readPage, _readLastSequences, _pollInterval, _time, _logger) = (readPage, readLastSequences, pollInterval, time, logger);
        _fault = fault ?? (static _ => Task.FromResult<AgentPgException?>(null));
        _poll = new SharedPoll<IReadOnlyDictionary<Guid, long>>(PollCoreAsync, time, pollInterval);
    }

    /// <summary>The feeds with at least one watcher.</summary>
    public int Count => _feeds.Count;

    /// <summary>Acquires the feed of a root run for a watcher that has every event up to <paramref name="afterSequence"/>
    /// (release it with <see cref="Release"/>), and attaches the watcher (<see cref="RunEventFeed.Attach"/>): a new feed's
    /// first watcher is attached before its reader starts, so the events it reads are shared, not dropped before it came.</summary>
    /// <param name="rootRunId">The root run.</param>
    /// <param name="afterSequence">The sequence the watcher has everything up to.</param>
    /// <param name="cursor">The watcher's cursor, or <see langword="null"/> when the events it needs next were dropped already.</param>
    public RunEventFeed Acquire(Guid rootRunId, long afterSequence, out FeedCursor? cursor)
    {
        lock (_lock)
        {
            if (_closed)
            {
                // The client was disposed after the watch checked: a feed that is closed from the start, with no reader.
                var closed = new RunEventFeed(rootRunId, _readPage, PollAsync, _fault, _pollInterval, _time, _logger) { Watchers = 1 };
                closed.Close();
                cursor = closed.Attach(afterSequence);
                return closed;
            }

            if (!_feeds.TryGetValue(rootRunId, out var feed))
            {
                feed = new RunEventFeed(rootRunId, _readPage, PollAsync, _fault, _pollInterval, _time, _logger);
                _feeds[rootRunId] = feed;
                cursor = feed.Attach(afterSequence);
                feed.Start();
            }
            else
            {
                cursor = feed.Attach(afterSequence);
            }

            feed.Watchers++;
            return feed;
        }
    }

    /// <summary>The events the feeds hold in memory (their watchers have not all read them yet), for tests that check the
    /// memory of a long run's watch is bounded.</summary>
    internal int RetainedEvents => _feeds.Values.Sum(f => f.Retained);

    /// <summary>Releases a watcher's hold on the feed (and its <paramref name="cursor"/>, if it had one): the last watcher's
    /// release stops the reader.</summary>
    public void Release(RunEventFeed feed, FeedCursor? cursor = null)
    {
        if (cursor is not null)
        {
            feed.Detach(cursor);
        }

        lock (_lock)
        {
            if (--feed.Watchers > 0)
            {
                return;
            }

            _feeds.TryRemove(new KeyValuePair<Guid, RunEventFeed>(feed.RootRunId, feed));
        }

        feed.Dispose();
    }

    /// <summary>Closes every feed (the client is disposed): the readers stop and the watchers end (<see cref="RunEventFeed.Read"/>
    /// says closed); a feed acquired later is closed from the start.</summary>
    public void Close()
    {
        RunEventFeed[] feeds;
        lock (_lock)
        {
            _closed = true;
            feeds = [.. _feeds.Values];
        }

        foreach (var feed in feeds)
        {
            feed.Close();
        }
    }

    public void Signal(Guid rootRunId)
    {
        if (_feeds.TryGetValue(rootRunId, out var feed))
        {
            feed.Wake();
        }
    }

    public void SignalAll()
    {
        foreach (var feed in _feeds.Values)
        {
            feed.Wake();
        }
    }

    /// <summary>The feeds' shared fallback poll (<see cref="SharedPoll{T}"/>): it wakes the feeds whose root run has events they
    /// have not read (or no events head any more).</summary>
    /// <param name="cancellationToken">Stops this feed's wait for the poll; the poll itself goes on for the others.</param>
    public Task PollAsync(CancellationToken cancellationToken) => _poll.GetAsync(cancellationToken);

    /// <summary>Reads the latest sequence of every watched root run and wakes the feeds behind it; returns what it read.</summary>
    private async Task<IReadOnlyDictionary<Guid, long>> PollCoreAsync()
    {
        var feeds = _feeds.Values.ToArray();
        if (feeds.Length == 0)
        {
            return new Dictionary<Guid, long>();
        }

        var last = await _readLastSequences([.. feeds.Select(f => f.RootRunId)], CancellationToken.None).ConfigureAwait(false);
        foreach (var feed in feeds)
        {
            if (!last.TryGetValue(feed.RootRunId, out var sequence) || sequence > feed.LastRead)
            {
                feed.Wake();
            }
        }

        return last;
    }
}

/// <summary>A watcher's place in a <see cref="RunEventFeed"/>: the index (counted from the feed's first event) of the next event
/// it reads.</summary>
internal sealed class FeedCursor
{
    /// <summary>Guarded by the feed's lock.</summary>
    internal long Next { get; set; }
}

/// <summary>The events of one root run that its watchers have not all read yet, in sequence order, and the reader that
/// appends new ones.</summary>
/// <remarks>Memory is bounded by what the watchers still need, not by the run's length (a long run streams tens of thousands
/// of deltas): each attached watcher has a <see cref="FeedCursor"/>, and the events before the last cursor are dropped, but
/// the last <see cref="KeepRead"/>. A watcher that needs dropped events (it started late, or resumes from an older sequence)
/// reads them from the database itself, then attaches (<see cref="Attach"/>).</remarks>
internal sealed class RunEventFeed(Guid rootRunId, Func<Guid, long, CancellationToken, Task<FeedPage>> readPage,
    Func<CancellationToken, Task> poll, Func<Exception, Task<AgentPgException?>> fault, TimeSpan pollInterval, TimeProvider time, ILogger logger)
    : IDisposable
{
    private const int PageSize = 500;

    // Read events kept anyway: a run of up to this many events is held whole, so watchers that join it at once (a page
    // opened by many) share one reader's events and read nothing from the database themselves.
    private const int KeepRead = PageSize;
    private static readonly TimeSpan s_firstBackoff = TimeSpan.FromMilliseconds(100);
    private static readonly TimeSpan s_maxBackoff = TimeSpan.FromSeconds(5);

    // _entries[0] is the feed's event number _dropped (counted from its first event); the events before it were read by every
    // attached watcher and dropped, the last of them with sequence _droppedThrough.
    private readonly List<FeedEntry> _entries = [];
    private readonly List<FeedCursor> _cursors = [];
    private long _dropped;
    private long _droppedThrough;
    private readonly CancellationTokenSource _stop = new();
    private readonly Workers.WakeSignal _wake = new();
    private TaskCompletionSource _changed = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private Task? _reader;
    private bool _ended;
    private bool _closed;
    private AgentPgException? _fault;
    private long _lastRead;

    public Guid RootRunId { get; } = rootRunId;

    /// <summary>Guarded by the owning <see cref="RunEventFeeds"/>' lock.</summary>
    public int Watchers { get; set; }

    /// <summary>The reader, for tests that check a released feed stopped.</summary>
    public Task? Reader => _reader;

    public void Start() => _reader = Internal.Background.Run(() => ReadLoopAsync(_stop.Token));

    /// <summary>Stops the reader (the last watcher left).</summary>
    public void Dispose()
    {
        _stop.Cancel();
        if (_reader is { } reader)
        {
            reader.ContinueWith(_ => _stop.Dispose(), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
        }
        else
        {
            _stop.Dispose();
        }
    }

    public void Wake() => _wake.Set();

    /// <summary>The sequence of the newest event read (0: none yet).</summary>
    public long LastRead => Volatile.Read(ref _lastRead);

    /// <summary>The events held in memory.</summary>
    public int Retained
    {
        get
        {
            lock (_entries)
            {
                return _entries.Count;
            }
        }
    }

    /// <summary>Whether the client was disposed (the watchers stop at once).</summary>
    public bool IsClosed
    {
        get
        {
            lock (_entries)
            {
                return _closed;
            }
        }
    }

    /// <summary>Attaches a watcher that has every event up to <paramref name="afterSequence"/>: its cursor, at the first event
    /// after it the feed holds or will read; or <see langword="null"/> when events after it were dropped already (read them
    /// from the database, then attach).</summary>
    public FeedCursor? Attach(long afterSequence)
    {
        lock (_entries)
        {
            if (afterSequence < _droppedThrough)
            {
                return null;
            }

            var skip = 0;
            while (skip < _entries.Count && _entries[skip].Event.Sequence <= afterSequence)
            {
                skip++;
            }

            var cursor = new FeedCursor { Next = _dropped + skip };
            _cursors.Add(cursor);
            return cursor;
        }
    }

    /// <summary>Detaches a watcher's cursor: what only it still needed is dropped.</summary>
    public void Detach(FeedCursor cursor)
    {
        lock (_entries)
        {
            if (_cursors.Remove(cursor))
            {
                DropRead();
            }
        }
    }

    /// <summary>Copies the entries from <paramref name="cursor"/> on into <paramref name="into"/> and moves the cursor past them;
    /// returns a task that completes when more arrive, whether the feed ended (the root run finished and everything was read),
    /// why it cannot go on, if it cannot (the schema is gone: the watchers throw it after the entries read before), and
    /// whether it was closed (the client was disposed: the watchers stop at once).</summary>
    public (Task Changed, bool Ended, AgentPgException? Fault, bool Closed) Read(FeedCursor cursor, List<FeedEntry> into)
    {
        lock (_entries)
        {
            if (_closed)
            {
                return (Task.CompletedTask, _ended, _fault, true);
            }

            var first = cursor.Next - _dropped;
            for (var i = (int)first; i < _entries.Count; i++)
            {
                into.Add(_entries[i]);
            }

            cursor.Next = _dropped + _entries.Count;
            if (into.Count > 0 && _entries.Count > KeepRead)
            {
                // This watcher may have been the last to need the oldest events.
                DropRead();
            }

            return (_changed.Task, _ended, _fault, false);
        }
    }

    /// <summary>Drops the events every attached watcher has read, but the last <see cref="KeepRead"/> (a watcher that attaches
    /// later reads what it needs before them from the database). Under the lock; O(watchers).</summary>
    private void DropRead()
    {
        var keepFrom = _dropped + _entries.Count - KeepRead;
        foreach (var cursor in _cursors)
        {
            keepFrom = Math.Min(keepFrom, cursor.Next);
        }

        var count = (int)(keepFrom - _dropped);
        if (count > 0)
        {
            _droppedThrough = _entries[count - 1].Event.Sequence;
            _entries.RemoveRange(0, count);
            _dropped = keepFrom;
        }
    }

    /// <summary>Stops the reader and wakes the watchers, which find the feed closed (the client is disposed).</summary>
    public void Close()
    {
        TaskCompletionSource changed;
        lock (_entries)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            changed = _changed;
        }

        try
        {
            _stop.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Its last watcher released it meanwhile: the reader is stopped already.
        }

        changed.TrySetResult();
    }

    private void Fail(AgentPgException exception)
    {
        TaskCompletionSource changed;
        lock (_entries)
        {
            _fault = exception;
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    private void Append(FeedPage page)
    {
        TaskCompletionSource changed;
        lock (_entries)
        {
            DropRead();
            _entries.AddRange(page.Entries);
            _ended |= page.RootFinished;
            changed = _changed;
            _changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        changed.TrySetResult();
    }

    private async Task ReadLoopAsync(CancellationToken stop)
    {
        long after = 0;
        while (!stop.IsCancellationRequested)
        {
            FeedPage page;
            try
            {
                if (await ReadPageAsync(after, stop).ConfigureAwait(false) is not { } read)
                {
                    return;
                }

                page = read;
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (AgentPgException fatal)
            {
                // The schema is gone (dropped or rolled back): nothing will be appended any more; the watchers throw.
                Fail(fatal);
                return;
            }

            // Past every row read, materialized or not: a feed that stopped before an event of an unknown kind read its page
            // again at every poll (the poll found it behind) for as long as the run was watched.
            var last = Math.Max(page.LastSequence, page.Entries.Count > 0 ? page.Entries[^1].Event.Sequence : 0);
            if (last > after)
            {
                after = last;
                Volatile.Write(ref _lastRead, after);
            }

            if (page.Entries.Count > 0 || page.RootFinished)
            {
                Append(page);
            }

            if (page.RootFinished)
            {
                // Nothing is appended after the root run's finish.
                return;
            }

            if (Math.Max(page.Rows, page.Entries.Count) >= PageSize)
            {
                continue;
            }

            try
            {
                // Woken by agentpg_run_event. Without one for a poll interval, the feeds' shared poll (one statement for all of
                // them) wakes this feed if its root run has events it has not read: a notification can be lost while the
                // listener reconnects.
                while (!await _wake.WaitAsync(pollInterval, time, stop).ConfigureAwait(false))
                {
                    try
                    {
                        await poll(stop).ConfigureAwait(false);
                    }
                    catch (Exception ex) when (ex is not OperationCanceledException)
                    {
                        Log.RunEventReadFailed(logger, ex, RootRunId);
                        if (Internal.SchemaCheck.IsMissingObject(ex))
                        {
                            // The schema may be gone: the page's read tells (and ends the watches if so), where the poll
                            // would fail every interval and the watchers wait forever.
                            break;
                        }
                    }
                }
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    internal const int MaxPage = PageSize;

    /// <summary>Reads the page of events after <paramref name="afterSequence"/>, the feed's reader and a watcher reading
    /// what the feed dropped alike: a failed read is logged and retried after a backoff (100 ms, doubling to 5 s; the
    /// database may be restarting), unless the feeds' fault check finds the schema gone.</summary>
    /// <returns>The page; <see langword="null"/> when the client was disposed meanwhile.</returns>
    /// <exception cref="AgentPgException">The schema is gone: the fault that ends every watch of the feed.</exception>
    public async Task<FeedPage?> ReadPageAsync(long afterSequence, CancellationToken cancellationToken)
    {
        var backoff = s_firstBackoff;
        while (!IsClosed)
        {
            try
            {
                return await readPage(RootRunId, afterSequence, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
            {
                if (IsClosed)
                {
                    return null;
                }

                Log.RunEventReadFailed(logger, ex, RootRunId);
                if (await FaultAsync(ex).ConfigureAwait(false) is { } fatal)
                {
                    throw fatal;
                }
            }

            await Task.Delay(backoff, time, cancellationToken).ConfigureAwait(false);
            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, s_maxBackoff.Ticks));
        }

        return null;
    }

    private async Task<AgentPgException?> FaultAsync(Exception exception)
    {
        try
        {
            return await fault(exception).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The check failed too (the database is restarting): keep trying.
            Log.RunEventReadFailed(logger, ex, RootRunId);
            return null;
        }
    }
}
