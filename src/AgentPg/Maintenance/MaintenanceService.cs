namespace AgentPg.Maintenance;

/// <summary>What every leader job of this folder shares: its name and its interval, both fixed when the engine is built
/// (the engine's options are a validated copy that never changes).</summary>
internal abstract class MaintenanceService(string name, TimeSpan interval) : IMaintenanceService
{
    public string Name => name;

    public TimeSpan Interval => interval;

    public abstract Task RunAsync(CancellationToken cancellationToken);
}
