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
        // Both workers start before the run: whichever claims it is killed mid-stream, the other takes over. Before, the second
        // started after the kill, and a loaded machine's process start (tens of seconds at a load of 60) ate into the deadline.
        // An instance TTL of 10 s (2 s in the crash tests' arguments): a survivor starved past 2 s was evicted in turn and the
        // run rescued once more (iterations 1, 2, 3, once under heavy load).
        var arguments = new Func<string, Dictionary<string, string>>(name =>
        {
            var args = WorkerProcess.CrashTestArguments(TestDatabase.ConnectionString, db.Schema, claude, name);
            args["instance-ttl-ms"] = "10000";
            return args;
        });
        await using var first = await WorkerProcess.StartAsync(arguments("first"));
        await using var second = await WorkerProcess.StartAsync(arguments("second"));
        var workers = new[] { first, second };
        await using var watcher = db.CreateClient();
        var agent = await watcher.CreateAgentAsync(new AgentDefinition { Name = "crash_" + Guid.NewGuid().ToString("N")[..6], Model = "m", Tools = [] });
        var runId = await watcher.RunFastAsync(await watcher.NewSessionAsync(), agent.Id, "write slowly");

        var events = new List<RunEvent>();
        var killedAfter = -1;
        WorkerProcess? victim = null;
        WorkerProcess? survivor = null;
        await Eventually.WithinAsync(Task.Run(async () =>
        {
            await foreach (var e in watcher.WatchRunAsync(runId))
            {
                events.Add(e);
                if (e is TextDeltaEvent && killedAfter < 0)
                {
                    // A worker is streaming the answer: kill it; the other one takes over.
                    killedAfter = events.Count;
                    var holder = (await watcher.GetRunAsync(runId)).ClaimedByInstanceId;
                    victim = workers.Single(w => w.InstanceId == holder);
                    survivor = workers.Single(w => w != victim);
                    await victim.KillAsync();
                }
            }
        }), "the watched run to finish after the rescue", TimeSpan.FromSeconds(90));

        Assert.True(killedAfter > 0, "a delta arrived while the first worker streamed");
        // What each iteration was, to tell why when there is one more (once under heavy load: iterations 1, 2, 3).
        var iterations = await db.ScalarAsync<string>(
            "SELECT string_agg(format('%s %s by %s, started %s, stop %s, error %s', iteration_number, trigger_type, instance_id, started_at, stop_reason, error_message), '; ' ORDER BY iteration_number) FROM {schema}.agentpg_iterations WHERE run_id = $1",
            runId);
        var iterationNumbers = events.OfType<IterationStartedEvent>().Select(i => i.IterationNumber).ToList();
        Assert.True(iterationNumbers.SequenceEqual([1, 2]),
            $"iterations {string.Join(", ", iterationNumbers)}: {iterations}; surviving worker's output: {survivor?.Output}");
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
        Assert.Equal(survivor!.InstanceId, await db.ScalarAsync<string>(
            "SELECT instance_id FROM {schema}.agentpg_iterations WHERE run_id = $1 AND iteration_number = 2", runId));
    }
}
