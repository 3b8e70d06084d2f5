using System.Collections.Concurrent;

namespace AgentPg.Soak;

/// <summary>The soak's timeline: every fault and phase, with the time since the start (printed as it happens, and
/// kept to place stuck runs next to the faults that preceded them).</summary>
internal sealed class SoakLog
{
    private readonly DateTimeOffset _start = TimeProvider.System.GetUtcNow();

    public ConcurrentQueue<(DateTimeOffset At, string What)> Faults { get; } = new();

    public string Elapsed(DateTimeOffset at) => $"t+{(at - _start).TotalSeconds,7:0.0}s";

    public void Info(string message) => Console.WriteLine($"{Elapsed(TimeProvider.System.GetUtcNow())} {message}");

    public void Fault(string message)
    {
        var now = TimeProvider.System.GetUtcNow();
        Faults.Enqueue((now, message));
        Console.WriteLine($"{Elapsed(now)} FAULT {message}");
    }
}
