using System.Collections.Concurrent;
using AgentPg.Runs;
using AgentPg.Runs.Events;

namespace AgentPg.Notifications;

/// <summary>Turns the notifications one client receives into wake-ups and signals for its parts: the workers of each mode,
/// run waiters, in-flight cancellation, tool callbacks, live-event feeds and delta publishing.</summary>
/// <remarks>A notification may be lost (the listening connection broke); every consumer also polls, and
/// <see cref="Reconnected"/> makes each of them look again at once.</remarks>
internal sealed class NotificationRouter(Engine engine, RunEventFeeds feeds, Func<bool> isStarted)
{
    // Runs this client created and whose worker it woke directly: their own agentpg_run_created wakes nothing more.
    private const int MaxWokenLocally = 10_000;
    private readonly ConcurrentDictionary<Guid, byte> _wokenLocally = new();

    /// <summary>Wakes the local worker of <paramref name="mode"/> for a run this client just committed, and remembers that its
    /// notification need not wake it again.</summary>
    public void WakeForCreatedRun(Guid runId, RunMode mode)
    {
        if (_wokenLocally.Count >= MaxWokenLocally)
        {
            _wokenLocally.Clear();
        }

        _wokenLocally.TryAdd(runId, 0);
        (mode == RunMode.Streaming ? engine.StreamingWake : engine.BatchWake).Set();
    }

    /// <summary>Handles one notification (the listener's <c>Received</c> event).</summary>
    public void Route(Notification notification)
    {
        switch (notification.Channel)
        {
            case Channels.RunCreated:
                if (notification.RunId is not { } created || !_wokenLocally.TryRemove(created, out _))
                {
                    Wake(notification.RunMode);
                }

                if (notification is { ParentRunId: { } parent, RunId: { } child })
                {
                    // Callbacks reach child runs even when another instance created them.
                    engine.Callbacks.Inherit(parent, child);
                }

                break;
            case Channels.RunState:
                Wake(notification.RunMode);
                break;
            case Channels.RunFinalized:
                if (notification.RunId is { } runId)
                {
                    RunFinalized(runId, notification.ParentRunId);
                }

                // A finished root run may have held back the session's next one; nothing else became claimable.
                if (notification.NextRunMode is { } nextRunMode)
                {
                    Wake(nextRunMode);
                }

                break;
            case Channels.ToolPending:
                engine.ToolWake.Set();
                break;
            case Channels.RunEvent:
                if (notification.RunId is { } eventRoot)
                {
                    feeds.Signal(eventRoot);
                }

                break;
            case Channels.RunWatch:
                if (notification.RunId is { } watchedRoot)
                {
                    engine.Deltas.Watched(watchedRoot);
                }

                break;
        }
    }

    /// <summary>The listener reconnected: notifications sent meanwhile are lost, so every consumer looks again.</summary>
    public void Reconnected()
    {
        Wake(null);
        engine.ToolWake.Set();
        engine.Waiters.SignalAll();
        feeds.SignalAll();
        if (isStarted())
        {
            _ = engine.Deltas.LoadAsync(CancellationToken.None);
        }
    }

    private void RunFinalized(Guid runId, Guid? parentRunId)
    {
        engine.Waiters.Signal(runId);
        engine.InFlight.Cancel(runId);
        if (parentRunId is { } parentRun)
        {
            engine.Callbacks.FireAgentToolComplete(parentRun, runId);
        }

        engine.Callbacks.Remove(runId);
        if (parentRunId is null)
        {
            engine.Deltas.Finished(runId);
        }
    }

    /// <summary>Wakes the workers of a run mode ("streaming", "batch"), or of both when the mode is unknown.</summary>
    private void Wake(string? runMode)
    {
        if (runMode != "batch")
        {
            engine.StreamingWake.Set();
        }

        if (runMode != "streaming")
        {
            engine.BatchWake.Set();
        }
    }
}
