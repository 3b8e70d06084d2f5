namespace AgentPg.Tests.Infrastructure;

/// <summary>System time plus the steps a test takes: lets a test decide when something timed (a fake batch's processing)
/// is over, instead of racing a real delay.</summary>
public sealed class SteppedClock : TimeProvider
{
    private long _offsetTicks;

    public void Step(TimeSpan by) => Interlocked.Add(ref _offsetTicks, by.Ticks);

    public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + TimeSpan.FromTicks(Interlocked.Read(ref _offsetTicks));
}
