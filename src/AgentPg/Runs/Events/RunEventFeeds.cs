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

    public RunEventFeed Acquire(Guid rootRunId)
    {
        lock (_lock)
        {
            if (_closed)
            {
                // The client was disposed after the watch checked: a feed that is closed from the start, with no reader.
                var closed = new RunEventFeed(rootRunId, _readPage, PollAsync, _fault, _pollInterval, _time, _logger) { Watchers = 1 };
                closed.Close();
                return closed;
            }

            if (!_feeds.TryGetValue(rootRunId, out var feed))
            {
                feed = new RunEventFeed(rootRunId, _readPage, PollAsync, _fault, _pollInterval, _time, _logger);
                _feeds[rootRunId] = feed;
                feed.Start();
            }

            feed.Watchers++;
            return feed;
        }
    }

    public void Release(RunEventFeed feed)
    {
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

/// <summary>The events of one root run read so far, in sequence order, and the reader that appends new ones.</summary>
internal sealed class RunEventFeed(Guid rootRunId, Func<Guid, long, CancellationToken, Task<FeedPage>> readPage,
    Func<CancellationToken, Task> poll, Func<Exception, Task<AgentPgException?>> fault, TimeSpan pollInterval, TimeProvider time, ILogger logger)
    : IDisposable
{
    private const int PageSize = 500;
    private static readonly TimeSpan s_maxBackoff = TimeSpan.FromSeconds(5);

    private readonly List<FeedEntry> _entries = [];
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

    /// <summary>Copies the entries from <paramref name="index"/> on into <paramref name="into"/>; returns a task that completes when
    /// more arrive, whether the feed ended (the root run finished and everything was read), why it cannot go on, if it
    /// cannot (the schema is gone: the watchers throw it after the entries read before), and whether it was closed (the client
    /// was disposed: the watchers stop at once).</summary>
    public (Task Changed, bool Ended, AgentPgException? Fault, bool Closed) Read(int index, List<FeedEntry> into)
    {
        lock (_entries)
        {
            if (_closed)
            {
                return (Task.CompletedTask, _ended, _fault, true);
            }

            for (var i = index; i < _entries.Count; i++)
            {
                into.Add(_entries[i]);
            }

            return (_changed.Task, _ended, _fault, false);
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
        var backoff = TimeSpan.FromMilliseconds(100);
        while (!stop.IsCancellationRequested)
        {
            FeedPage page;
            try
            {
                page = await readPage(RootRunId, after, stop).ConfigureAwait(false);
                backoff = TimeSpan.FromMilliseconds(100);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.RunEventReadFailed(logger, ex, RootRunId);
                if (await FaultAsync(ex).ConfigureAwait(false) is { } fatal)
                {
                    // The schema is gone (dropped or rolled back): nothing will be appended any more; the watchers throw.
                    Fail(fatal);
                    return;
                }

                // The database may be restarting: the watchers wait, the feed keeps trying.
                try
                {
                    await Task.Delay(backoff, time, stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    return;
                }

                backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, s_maxBackoff.Ticks));
                continue;
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
