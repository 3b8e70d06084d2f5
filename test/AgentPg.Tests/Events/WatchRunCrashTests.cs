using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

/// <summary>A watcher in the test process follows a run streamed by a worker process that is killed mid-stream.</summary>
public sealed class WatchRunCrashTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    // About 2 000 stream events at 100 ms, over three minutes: longer than the test's deadline (90 s), so the first attempt
    // can only end by the kill, however late a loaded machine lets the watcher see its first delta (a shorter stream could
    // finish, and the run complete without a rescue, before the kill).
    private static readonly string s_firstAttempt = string.Concat(Enumerable.Repeat("This answer is written slowly by the first worker. ", 600));
    private const string SecondAttempt = "This answer comes from the second worker, after the rescue.";

    [DatabaseFact]
    public async Task WatchRun_WorkerKilledMidStream_WatcherSeesTheRescueAndTheAnswerFromAnotherInstance()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        var calls = 0;
        claude.Respond(_ => Interlocked.Increment(ref calls) == 1
            ? FakeReply.Text(s_firstAttempt) with { EventDelay = TimeSpan.FromMilliseconds(100) }
            : FakeReply.Text(SecondAttempt) with { EventDelay = TimeSpan.FromMilliseconds(10) });
        var first = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(TestDatabase.ConnectionString, db.Schema, claude, "first"));
        await using var firstWorker = first;
        WorkerProcess? second = null;
        await using var watcher = db.CreateClient();
        var agent = await watcher.CreateAgentAsync(new AgentDefinition { Name = "crash_" + Guid.NewGuid().ToString("N")[..6], Model = "m", Tools = [] });
        var runId = await watcher.RunFastAsync(await watcher.NewSessionAsync(), agent.Id, "write slowly");

        var events = new List<RunEvent>();
        var killedAfter = -1;
        try
        {
            await Eventually.WithinAsync(Task.Run(async () =>
            {
                await foreach (var e in watcher.WatchRunAsync(runId))
                {
                    events.Add(e);
                    if (e is TextDeltaEvent && killedAfter < 0)
                    {
                        // The first worker is streaming the answer: kill it, and start the instance that takes over.
                        killedAfter = events.Count;
                        await first.KillAsync();
                        second = await WorkerProcess.StartAsync(WorkerProcess.CrashTestArguments(TestDatabase.ConnectionString, db.Schema, claude, "second"));
                    }
                }
            }), "the watched run to finish after the rescue", TimeSpan.FromSeconds(90));
        }
        finally
        {
            if (second is not null)
            {
                await second.DisposeAsync();
            }
        }

        Assert.True(killedAfter > 0, "a delta arrived while the first worker streamed");
        // What each iteration was, to tell why when there is one more (once under heavy load: iterations 1, 2, 3).
        var iterations = await db.ScalarAsync<string>(
            "SELECT string_agg(format('%s %s by %s, started %s, stop %s, error %s', iteration_number, trigger_type, instance_id, started_at, stop_reason, error_message), '; ' ORDER BY iteration_number) FROM {schema}.agentpg_iterations WHERE run_id = $1",
            runId);
        var iterationNumbers = events.OfType<IterationStartedEvent>().Select(i => i.IterationNumber).ToList();
        Assert.True(iterationNumbers.SequenceEqual([1, 2]),
            $"iterations {string.Join(", ", iterationNumbers)}: {iterations}; second worker's output: {second?.Output}");
        var afterKill = events.Skip(killedAfter).ToList();
        var rescued = Assert.Single(afterKill.OfType<RunStateChangedEvent>(), s => s.State == RunState.Pending);
        Assert.Equal(RunState.Streaming, rescued.PreviousState);
        Assert.True(afterKill.IndexOf(rescued) < afterKill.FindIndex(e => e is IterationStartedEvent { IterationNumber: 2 }));
        Assert.Equal(SecondAttempt, string.Concat(events.OfType<TextDeltaEvent>().Where(d => d.IterationNumber == 2).Select(d => d.Text)));
        Assert.StartsWith(string.Concat(events.OfType<TextDeltaEvent>().Where(d => d.IterationNumber == 1).Select(d => d.Text)), s_firstAttempt, StringComparison.Ordinal);
        Assert.All(events.Zip(events.Skip(1)), p => Assert.True(p.First.Sequence < p.Second.Sequence, "sequences strictly increase"));
        var finished = Assert.IsType<RunFinishedEvent>(events[^1]);
        Assert.Equal(RunState.Completed, finished.State);
        Assert.Equal(SecondAttempt, finished.Response!.Text);
        Assert.Equal(second!.InstanceId, await db.ScalarAsync<string>(
            "SELECT instance_id FROM {schema}.agentpg_iterations WHERE run_id = $1 AND iteration_number = 2", runId));
    }
}
