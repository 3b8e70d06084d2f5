using System.Diagnostics;
using System.Threading.Channels;

namespace AgentPg.Tests.Infrastructure;

/// <summary>System time, except the timers of one timeout under test (those created with <see cref="Timeout"/> as their due
/// time, as <c>new CancellationTokenSource(Timeout, time)</c> does): they fire only when the test fires them. A test first waits
/// for what must have happened before the timeout (the tool started, the call reached the server), then fires it, instead of
/// racing a short real timeout on a loaded machine.</summary>
/// <param name="timeout">The due time of the held timers.</param>
/// <param name="createdBy">When set, only the timers with that due time created by this type's code (its async methods
/// included) are held: for a due time the library also uses elsewhere. <c>NotificationListener</c>'s first reconnect delay
/// is 100 ms, as are <c>ClaimingWorker</c>'s first error delay, <c>Transient</c>'s second retry and the tool poll interval of
/// the tests' options, which must keep running.</param>
public sealed class HeldTimeouts(TimeSpan timeout, Type? createdBy = null) : TimeProvider
{
    private static readonly TimeSpan s_never = global::System.Threading.Timeout.InfiniteTimeSpan;

    private readonly Channel<ITimer> _held = Channel.CreateUnbounded<ITimer>();
    private readonly List<ITimer> _all = [];

    /// <summary>The due time of the held timers: an unusual value (17 minutes, say), so that no other timer has it.</summary>
    public TimeSpan Timeout { get; } = timeout;

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        if (dueTime != Timeout || (createdBy is not null && !IsCreatedBy(createdBy)))
        {
            return base.CreateTimer(callback, state, dueTime, period);
        }

        var timer = base.CreateTimer(callback, state, s_never, period);
        lock (_all)
        {
            _all.Add(timer);
        }

        _held.Writer.TryWrite(timer);
        return timer;
    }

    // The timer is created synchronously by the code that asks for it (Task.Delay, WaitAsync, a CancellationTokenSource): a
    // frame of the type's methods, or of its async methods' state machines (types nested in it), is on the stack.
    private static bool IsCreatedBy(Type type)
        => new StackTrace(1, fNeedFileInfo: false).GetFrames().Any(f => f.GetMethod()?.DeclaringType is { } t && (t == type || t.DeclaringType == type));

    /// <summary>Fires the oldest held timer that has not fired yet, waiting for one to be created.</summary>
    public async Task FireNextAsync()
    {
        var timer = await Eventually.WithinAsync(_held.Reader.ReadAsync().AsTask(), "a timer with the held timeout");
        timer.Change(TimeSpan.Zero, s_never);
    }

    /// <summary>Waits until a timer with the held timeout is created (what had to happen before it has happened), without
    /// firing it: <see cref="FireAll"/> fires it later.</summary>
    public Task WaitForTimerAsync() => Eventually.WithinAsync(_held.Reader.ReadAsync().AsTask(), "a timer with the held timeout");

    /// <summary>Fires every held timer created so far (the disposed ones, whose timeout is over, do nothing).</summary>
    public void FireAll()
    {
        lock (_all)
        {
            foreach (var timer in _all)
            {
                try
                {
                    timer.Change(TimeSpan.Zero, s_never);
                }
                catch (ObjectDisposedException)
                {
                    // Its CancellationTokenSource was disposed: that timeout is over.
                }
            }
        }

        while (_held.Reader.TryRead(out _))
        {
        }
    }
}
