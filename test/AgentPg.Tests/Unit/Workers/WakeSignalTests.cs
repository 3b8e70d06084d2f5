using AgentPg.Workers;

namespace AgentPg.Tests.Unit.Workers;

public sealed class WakeSignalTests
{
    private static readonly TimeSpan s_long = TimeSpan.FromMinutes(5);

    [Fact]
    public async Task WaitAsync_SetBefore_ReturnsTrueAtOnce()
    {
        var signal = new WakeSignal();
        signal.Set();

        Assert.True(await signal.WaitAsync(s_long, TimeProvider.System, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task WaitAsync_ManySetsBeforeOneWait_WakeItOnce()
    {
        var signal = new WakeSignal();
        signal.Set();
        signal.Set();
        signal.Set();

        Assert.True(await signal.WaitAsync(s_long, TimeProvider.System, CancellationToken.None));
        Assert.False(await signal.WaitAsync(TimeSpan.Zero, TimeProvider.System, CancellationToken.None));
    }

    [Fact]
    public async Task WaitAsync_SetWhileWaiting_Wakes()
    {
        var signal = new WakeSignal();
        var wait = signal.WaitAsync(s_long, TimeProvider.System, CancellationToken.None);
        Assert.False(wait.IsCompleted);

        signal.Set();

        Assert.True(await wait.WaitAsync(TimeSpan.FromSeconds(10)));
    }

    [Fact]
    public async Task WaitAsync_NothingSet_ReturnsFalseAfterTheTimeout()
    {
        var signal = new WakeSignal();

        Assert.False(await signal.WaitAsync(TimeSpan.FromMilliseconds(1), TimeProvider.System, CancellationToken.None));
    }

    [Fact]
    public async Task WaitAsync_Cancelled_Throws()
    {
        var signal = new WakeSignal();
        using var cts = new CancellationTokenSource();
        var wait = signal.WaitAsync(s_long, TimeProvider.System, cts.Token);

        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => wait);
    }

    [Fact]
    public async Task Set_AfterAWakeUp_WakesTheNextWait()
    {
        var signal = new WakeSignal();
        signal.Set();
        Assert.True(await signal.WaitAsync(s_long, TimeProvider.System, CancellationToken.None));

        signal.Set();

        Assert.True(await signal.WaitAsync(s_long, TimeProvider.System, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));
    }
}
