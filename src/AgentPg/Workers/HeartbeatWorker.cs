using AgentPg.Diagnostics;
using AgentPg.Runs;
using AgentPg.Storage;

namespace AgentPg.Workers;

/// <summary>Records every <see cref="AgentPgOptions.HeartbeatInterval"/> that this instance is alive. An instance that was
/// evicted as stale while still alive (for example after a long pause) registers itself and its tools again. Each
/// heartbeat also records what the workers hold (<see cref="HeldWork"/>), for the leader's stuck-work sweep.</summary>
internal sealed class HeartbeatWorker(Engine engine, Func<CancellationToken, Task> registerAgain)
{
    private Task? _loop;

    public void Start(CancellationToken stop) => _loop = Internal.Background.Run(() => LoopAsync(stop));

    public Task StopAsync() => _loop ?? Task.CompletedTask;

    private async Task LoopAsync(CancellationToken stop)
    {
        using var timer = new PeriodicTimer(engine.Options.HeartbeatInterval, engine.Time);
        while (true)
        {
            try
            {
                if (!await timer.WaitForNextTickAsync(stop).ConfigureAwait(false))
                {
                    return;
                }

                int rows;
                var command = engine.Sql.Instances.HeartbeatCommand(engine.DataSource, engine.InstanceId, engine.Held.Snapshot());
                await using (command.ConfigureAwait(false))
                {
                    rows = await command.ExecuteNonQueryAsync(stop).ConfigureAwait(false);
                }

                if (rows == 0)
                {
                    Log.ReRegistering(engine.Logger, engine.InstanceId);
                    await registerAgain(stop).ConfigureAwait(false);
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.HeartbeatFailed(engine.Logger, ex, engine.InstanceId);
                engine.Hooks.Error(ex);
            }
        }
    }
}
