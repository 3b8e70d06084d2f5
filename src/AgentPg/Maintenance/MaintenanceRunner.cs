using AgentPg.Diagnostics;
using AgentPg.Runs;

namespace AgentPg.Maintenance;

/// <summary>Runs the leader-only jobs while this instance leads: each as soon as leadership begins, then every
/// <see cref="IMaintenanceService.Interval"/>, one at a time, until leadership ends.</summary>
internal sealed class MaintenanceRunner(Engine engine, IReadOnlyList<IMaintenanceService> services)
{
    // A floor on the wait between two passes, so a zero interval cannot spin.
    private static readonly TimeSpan s_minimumWait = TimeSpan.FromMilliseconds(10);

    private readonly object _gate = new();
    private CancellationTokenSource? _leading;
    private Task _loop = Task.CompletedTask;

    public MaintenanceRunner(Engine engine)
        : this(engine, CreateServices(engine))
    {
    }

    /// <summary>The leader's jobs, in the order they run when several are due together.</summary>
    public static IReadOnlyList<IMaintenanceService> CreateServices(Engine engine) =>
    [
        new InstanceCleanup(engine),
        // After the cleanup, so instances that just died no longer count as able to claim.
        new UnclaimableRunScan(engine),
        new RunRescuer(engine),
        new StuckWorkSweeper(engine),
        new RunEventRetention(engine),
        new ApprovalTimeout(engine),
    ];

    public IReadOnlyList<IMaintenanceService> Services => services;

    /// <summary>Starts the jobs; they run until <see cref="StopAsync"/> or until <paramref name="stop"/> is cancelled.</summary>
    public void Start(CancellationToken stop)
    {
        lock (_gate)
        {
            if (_leading is not null)
            {
                return;
            }

            _leading = CancellationTokenSource.CreateLinkedTokenSource(stop);
            var token = _leading.Token;
            _loop = Internal.Background.Run(() => LoopAsync(token));
        }
    }

    /// <summary>Stops the jobs and waits for the one in progress to end. Does nothing when they are not running.</summary>
    public async Task StopAsync()
    {
        CancellationTokenSource? leading;
        Task loop;
        lock (_gate)
        {
            leading = _leading;
            loop = _loop;
            _leading = null;
        }

        if (leading is null)
        {
            return;
        }

        await leading.CancelAsync().ConfigureAwait(false);
        await loop.ConfigureAwait(false);
        leading.Dispose();
    }

    private async Task LoopAsync(CancellationToken stop)
    {
        // 0: never run, so every job is due at once.
        var lastRun = new long[services.Count];
        while (!stop.IsCancellationRequested)
        {
            for (var i = 0; i < services.Count && !stop.IsCancellationRequested; i++)
            {
                if (lastRun[i] != 0 && engine.Time.GetElapsedTime(lastRun[i]) < services[i].Interval)
                {
                    continue;
                }

                lastRun[i] = engine.Time.GetTimestamp();
                try
                {
                    await services[i].RunAsync(stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (stop.IsCancellationRequested)
                {
                    return;
                }
                catch (Exception ex)
                {
                    Log.MaintenanceFailed(engine.Logger, ex, services[i].Name, engine.InstanceId);
                    engine.Hooks.Error(ex);
                }
            }

            var wait = TimeSpan.MaxValue;
            for (var i = 0; i < services.Count; i++)
            {
                var until = services[i].Interval - engine.Time.GetElapsedTime(lastRun[i]);
                wait = until < wait ? until : wait;
            }

            try
            {
                await Task.Delay(wait < s_minimumWait ? s_minimumWait : wait, engine.Time, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }
}
