using AgentPg.Leadership;
using AgentPg.Maintenance;
using AgentPg.Runs;

namespace AgentPg.Workers;

/// <summary>The background loops of a started client, and their two-phase stop.</summary>
internal sealed class WorkerSet(Engine engine, Func<CancellationToken, Task> registerAgain) : IDisposable
{
    // How long in-flight work gets to notice the hard stop before the instance releases it anyway (its late writes are
    // refused by fencing).
    private static readonly TimeSpan s_hardStopGrace = TimeSpan.FromSeconds(10);

    private readonly CancellationTokenSource _stopClaiming = new();
    private readonly CancellationTokenSource _hardStop = new();
    private readonly CancellationTokenSource _abandon = new();
    private readonly CancellationTokenSource _stopHeartbeat = new();
    private readonly StreamingRunWorker _streaming = new(engine);
    private readonly BatchRunWorker _batches = new(engine);
    private readonly BatchPoller _poller = new(engine);
    private readonly ToolWorker _tools = new(engine);
    private readonly HeartbeatWorker _heartbeat = new(engine, registerAgain);
    private readonly MaintenanceRunner _maintenance = new(engine);
    private LeaderElector? _elector;

    public bool IsLeader => _elector?.IsLeader ?? false;

    public void Start()
    {
        _heartbeat.Start(_stopHeartbeat.Token);
        _elector = new LeaderElector(engine, LeadershipChangedAsync);
        _elector.Start(_stopClaiming.Token);
        var stop = new StopTokens(_hardStop.Token, _abandon.Token);
        _streaming.Start(stop, _stopClaiming.Token);
        _batches.Start(stop, _stopClaiming.Token);
        _tools.Start(stop, _stopClaiming.Token);
        _poller.Start(_stopClaiming.Token);
    }

    /// <summary>Stops claiming, lets in-flight work finish until <paramref name="deadline"/>, then cancels what is left.</summary>
    public async Task StopAsync(CancellationToken deadline)
    {
        await _stopClaiming.CancelAsync().ConfigureAwait(false);

        // Resign as soon as the elector's loop ends (with claiming): it no longer refreshes the lease, and a drain may outlast
        // it, so waiting for the drain would let a successor be elected while this instance still believes it leads (and
        // delay the handover by the drain). Draining work stays this instance's: the heartbeat runs on and reports it held,
        // so the new leader's rescue leaves it alone, and the release below still comes after the resign.
        if (_elector is not null)
        {
            await _elector.StopAsync().ConfigureAwait(false);
        }

        var drain = Task.WhenAll(_streaming.DrainAsync(), _batches.DrainAsync(), _tools.DrainAsync(), _poller.StopAsync());
        try
        {
            await drain.WaitAsync(deadline).ConfigureAwait(false);
        }
        catch (OperationCanceledException)
        {
            await _hardStop.CancelAsync().ConfigureAwait(false);
            try
            {
                await drain.WaitAsync(s_hardStopGrace, engine.Time, CancellationToken.None).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                // Work that ignores cancellation keeps running detached; releasing it below fences it off. Results still
                // being written are given up now.
                await _abandon.CancelAsync().ConfigureAwait(false);
            }
        }

        // The heartbeat runs until here so a long drain never makes this instance look dead.
        await _stopHeartbeat.CancelAsync().ConfigureAwait(false);
        await _heartbeat.StopAsync().ConfigureAwait(false);
        Dispose();
    }

    /// <summary>The leader runs the maintenance jobs, from the moment it is elected until it stops leading.</summary>
    private async Task LeadershipChangedAsync(bool leading, CancellationToken cancellationToken)
    {
        if (leading)
        {
            await engine.Hooks.BecameLeaderAsync(cancellationToken).ConfigureAwait(false);
            _maintenance.Start(_stopClaiming.Token);
        }
        else
        {
            await _maintenance.StopAsync().ConfigureAwait(false);
            await engine.Hooks.LostLeadershipAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    public void Dispose()
    {
        _streaming.Dispose();
        _batches.Dispose();
        _tools.Dispose();
        _stopClaiming.Dispose();
        _hardStop.Dispose();
        _abandon.Dispose();
        _stopHeartbeat.Dispose();
    }
}
