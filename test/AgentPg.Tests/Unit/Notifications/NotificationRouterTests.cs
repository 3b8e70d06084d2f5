using System.Collections.Concurrent;
using AgentPg.Notifications;
using AgentPg.Runs;
using AgentPg.Runs.Events;
using AgentPg.Storage;
using AgentPg.Tests.Infrastructure;
using AgentPg.Workers;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AgentPg.Tests.Unit.Notifications;

/// <summary>Which part of the engine each notification wakes. No database: the router only signals in-memory parts, and the
/// data source below is never opened.</summary>
public sealed class NotificationRouterTests : IDisposable
{
    private readonly NpgsqlDataSource _dataSource = NpgsqlDataSource.Create("Host=127.0.0.1;Port=1;Database=unused");
    private readonly Engine _engine;
    private readonly NotificationRouter _router;

    public NotificationRouterTests()
    {
        var options = new AgentPgOptions { InstanceId = "router-test" };
        _engine = new Engine(_dataSource, options, new Sql(new SchemaName(options.Schema)), NullLogger.Instance, "router-test",
            new ConcurrentDictionary<string, ITool>());
        var feeds = new RunEventFeeds((_, _, _) => throw new InvalidOperationException("no feed reads in these tests"),
            (_, _) => throw new InvalidOperationException("no feed polls in these tests"), TimeSpan.FromSeconds(1), TimeProvider.System, NullLogger.Instance);
        _router = new NotificationRouter(_engine, feeds, () => false);
    }

    public void Dispose()
    {
        _engine.Dispose();
        _dataSource.Dispose();
    }

    [Theory]
    [InlineData("streaming", true, false)]
    [InlineData("batch", false, true)]
    [InlineData(null, true, true)]
    public async Task RunCreated_WakesTheWorkersOfItsMode(string? mode, bool streaming, bool batch)
    {
        _router.Route(new Notification(Channels.RunCreated, Guid.NewGuid(), mode, null, null, null));

        Assert.Equal(streaming, await IsSetAsync(_engine.StreamingWake));
        Assert.Equal(batch, await IsSetAsync(_engine.BatchWake));
    }

    [Fact]
    public async Task RunCreated_OfARunThisClientWokeItself_WakesNothingMore_Once()
    {
        var run = Guid.NewGuid();
        _router.WakeForCreatedRun(run, RunMode.Streaming);
        Assert.True(await IsSetAsync(_engine.StreamingWake));

        _router.Route(new Notification(Channels.RunCreated, run, "streaming", null, null, null));
        Assert.False(await IsSetAsync(_engine.StreamingWake));

        // The entry was consumed: a repeated notification of the same run wakes again.
        _router.Route(new Notification(Channels.RunCreated, run, "streaming", null, null, null));
        Assert.True(await IsSetAsync(_engine.StreamingWake));
    }

    [Fact]
    public async Task RunFinalized_SignalsWaitersCancelsLocalWorkAndWakesTheSessionsNextRun()
    {
        var run = Guid.NewGuid();
        using var waiter = _engine.Waiters.Acquire(run);
        using var cts = new CancellationTokenSource();
        using var registration = _engine.InFlight.Register(run, cts);

        _router.Route(new Notification(Channels.RunFinalized, run, "streaming", "cancelled", null, null, "batch"));

        Assert.True(waiter.Task.IsCompletedSuccessfully);
        Assert.True(cts.IsCancellationRequested);
        Assert.True(await IsSetAsync(_engine.BatchWake));
        Assert.False(await IsSetAsync(_engine.StreamingWake));
    }

    [Fact]
    public async Task RunFinalized_BeforeAToolRunnerFiresOnToolComplete_TheCallbackItTookBeforeItsCommitStillFires()
    {
        var run = Guid.NewGuid();
        var completes = new ConcurrentQueue<ToolCallEvent>();
        _engine.Callbacks.Register(run, new RunOptions { OnToolComplete = completes.Enqueue }, transactionId: null);

        // A tool runner takes the callback before its result commits; the commit lets the run go on, and it finishes (its
        // notification removes the run's callbacks) before the runner's continuation fires.
        var taken = _engine.Callbacks.OnComplete(run);
        _router.Route(new Notification(Channels.RunFinalized, run, "streaming", "completed", null, null));
        _engine.Callbacks.FireComplete(new ToolCallEvent { RunId = run, ToolName = "read_tenant", Output = "tenant=acme" }, taken);

        await Eventually.TrueAsync(() => !completes.IsEmpty, "OnToolComplete", TimeSpan.FromSeconds(10));
        Assert.Equal("tenant=acme", Assert.Single(completes).Output);
        Assert.False(_engine.Callbacks.Has(run));
    }

    [Fact]
    public async Task ToolPending_WakesOnlyTheToolWorker()
    {
        _router.Route(new Notification(Channels.ToolPending, null, null, null, null, null));

        Assert.True(await IsSetAsync(_engine.ToolWake));
        Assert.False(await IsSetAsync(_engine.StreamingWake));
        Assert.False(await IsSetAsync(_engine.BatchWake));
    }

    [Fact]
    public async Task Reconnected_WakesEveryWorkerAndWaiter()
    {
        var run = Guid.NewGuid();
        using var waiter = _engine.Waiters.Acquire(run);

        _router.Reconnected();

        Assert.True(waiter.Task.IsCompletedSuccessfully);
        Assert.True(await IsSetAsync(_engine.StreamingWake));
        Assert.True(await IsSetAsync(_engine.BatchWake));
        Assert.True(await IsSetAsync(_engine.ToolWake));
    }

    private static Task<bool> IsSetAsync(WakeSignal signal) => signal.WaitAsync(TimeSpan.Zero, TimeProvider.System, CancellationToken.None);
}
