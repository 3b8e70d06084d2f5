using System.Collections.Concurrent;
using AgentPg.Maintenance;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Unit.Maintenance;

public sealed class MaintenanceRunnerTests
{
    private sealed class Job(string name, TimeSpan interval, ConcurrentQueue<string> log, Func<CancellationToken, Task>? body = null) : IMaintenanceService
    {
        private int _runs;

        public string Name => name;

        public TimeSpan Interval => interval;

        public int Runs => Volatile.Read(ref _runs);

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            Interlocked.Increment(ref _runs);
            log.Enqueue(name);
            if (body is not null)
            {
                await body(cancellationToken);
            }
        }
    }

    [Fact]
    public async Task Start_RunsEveryJobAtOnceInTheirOrder()
    {
        var log = new ConcurrentQueue<string>();
        var first = new Job("first", TimeSpan.FromHours(1), log);
        var second = new Job("second", TimeSpan.FromHours(1), log);
        var runner = new MaintenanceRunner(TestEngine.CreateWithoutDatabase("runner-1"), [first, second]);

        runner.Start(CancellationToken.None);
        await Eventually.TrueAsync(() => second.Runs == 1, "both jobs to run once at the start");
        await runner.StopAsync();

        Assert.Equal(["first", "second"], log);
    }

    [Fact]
    public async Task AJobThatThrows_IsReportedAndRunsAgain_AndTheOthersKeepRunning()
    {
        var log = new ConcurrentQueue<string>();
        var errors = new ConcurrentQueue<Exception>();
        var failing = new Job("failing", TimeSpan.FromMilliseconds(20), log, _ => throw new InvalidOperationException("job broke"));
        var healthy = new Job("healthy", TimeSpan.FromMilliseconds(20), log);
        var options = new AgentPgOptions
        {
            ApiKey = "test-key",
            Hooks = new AgentPgHooks { OnError = (e, _) => { errors.Enqueue(e); return Task.CompletedTask; } },
        };
        var runner = new MaintenanceRunner(TestEngine.CreateWithoutDatabase("runner-2", options), [failing, healthy]);

        runner.Start(CancellationToken.None);
        await Eventually.TrueAsync(() => failing.Runs >= 3 && healthy.Runs >= 3, "both jobs to run again after the failure");
        await runner.StopAsync();

        Assert.Contains(errors, e => e.Message == "job broke");
    }

    [Fact]
    public async Task StopAsync_CancelsTheJobInProgressAndWaitsForIt()
    {
        var started = new TaskCompletionSource();
        var ended = false;
        var job = new Job("slow", TimeSpan.FromHours(1), new ConcurrentQueue<string>(), async ct =>
        {
            started.SetResult();
            try
            {
                await Task.Delay(Timeout.InfiniteTimeSpan, ct);
            }
            finally
            {
                ended = true;
            }
        });
        var runner = new MaintenanceRunner(TestEngine.CreateWithoutDatabase("runner-3"), [job]);

        runner.Start(CancellationToken.None);
        await Eventually.WithinAsync(started.Task, "the job to start");
        await Eventually.WithinAsync(runner.StopAsync(), "the runner to stop");

        Assert.True(ended, "StopAsync returned before the job in progress ended");
    }

    [Fact]
    public async Task StartAfterStop_RunsTheJobsAgainAtOnce()
    {
        var job = new Job("again", TimeSpan.FromHours(1), new ConcurrentQueue<string>());
        var runner = new MaintenanceRunner(TestEngine.CreateWithoutDatabase("runner-4"), [job]);

        runner.Start(CancellationToken.None);
        await Eventually.TrueAsync(() => job.Runs == 1, "the first run");
        await runner.StopAsync();
        runner.Start(CancellationToken.None);
        await Eventually.TrueAsync(() => job.Runs == 2, "a run at once when leadership begins again");
        await runner.StopAsync();
    }

    [Fact]
    public void CreateServices_HasTheCleanupTheUnclaimableRunScanTheRescueTheStuckWorkSweepTheEventRetentionAndTheApprovalTimeout()
    {
        var services = MaintenanceRunner.CreateServices(TestEngine.CreateWithoutDatabase("runner-5"));

        Assert.Equal(["instance cleanup", "unclaimable-run scan", "run rescue", "stuck-work sweep", "run event retention", "approval timeout"],
            services.Select(s => s.Name));
    }
}
