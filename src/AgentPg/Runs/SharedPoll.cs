namespace AgentPg.Runs;

/// <summary>A fallback poll that many waiting callers share: the first caller whose wait timed out at least one interval after
/// the last poll started (or after one failed) starts a poll, the others get its result. One statement per interval however
/// many wait (see <see cref="RunWaiters"/> and the run event feeds).</summary>
/// <typeparam name="T">What a poll returns.</typeparam>
internal sealed class SharedPoll<T>(Func<Task<T>> poll, TimeProvider time, TimeSpan interval)
{
    private readonly Lock _lock = new();
    private Task<T>? _current;
    private long _started;

    /// <summary>The current poll's result, or a new poll's when the current one is an interval old or failed.</summary>
    /// <param name="cancellationToken">Stops this caller's wait; the poll itself goes on for the others.</param>
    public Task<T> GetAsync(CancellationToken cancellationToken)
    {
        Task<T> current;
        lock (_lock)
        {
            if (_current is null || _current.IsFaulted || _current.IsCanceled || (_current.IsCompleted && time.GetElapsedTime(_started) >= interval))
            {
                _started = time.GetTimestamp();
                // Started outside the lock, with no caller's token: a caller that gives up does not fail the others.
                _current = Task.Run(poll, CancellationToken.None);
                // Observed even when every caller gave up before it failed (the database gone, the client disposed).
                _current.ContinueWith(static t => _ = t.Exception, CancellationToken.None,
                    TaskContinuationOptions.OnlyOnFaulted | TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            }

            current = _current;
        }

        return current.WaitAsync(cancellationToken);
    }
}
