using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>A batch-mode run cancelled while its Message Batch is in flight at Claude.</summary>
public sealed class BatchCancelInFlightTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static bool IsBatchCreate(RecordedRequest r) => r.Method == "POST" && r.Path == "/v1/messages/batches";

    private static bool IsBatchCancel(RecordedRequest r) => r.Method == "POST" && r.Path.EndsWith("/cancel", StringComparison.Ordinal);

    /// <summary>"go" waits an hour at Claude; anything else is answered at once.</summary>
    private static void Script(Harness h)
        => h.Claude.Respond(r => r.LastUserText == "go" ? FakeReply.Text("late") with { Delay = TimeSpan.FromHours(1) } : FakeReply.Text("answered"));

    private static async Task<string> SubmittedBatchAsync(Harness h, Guid run)
    {
        var batchId = "";
        await Eventually.TrueAsync(async () => (batchId = (await h.Client.GetIterationsAsync(run)).SingleOrDefault()?.BatchId ?? "") != "",
            "the run's batch to be submitted");
        return batchId;
    }

    private static async Task<List<RunEvent>> CollectAsync(IAsyncEnumerable<RunEvent> events)
    {
        var list = new List<RunEvent>();
        await foreach (var e in events)
        {
            list.Add(e);
        }

        return list;
    }

    /// <summary>Another session's batch run, answered at once: when it has completed, the batch poller has finished every poll
    /// it started before this was created (its ticks run one after the other).</summary>
    private static async Task PollerMovedOnAsync(Harness h, AgentDefinition agent)
    {
        var sentinel = await h.Client.RunAsync(await h.Client.NewSessionAsync(), agent.Id, "are you there?");
        Assert.Equal("answered", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(sentinel), "a later batch run", s_timeout)).Text);
    }

    private static async Task AssertCancelledAndUntouchedAsync(Harness h, Guid run, Guid session, List<RunEvent> events)
    {
        Assert.Equal(RunState.Cancelled, Assert.IsType<RunFinishedEvent>(events[^1]).State);
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(run)).State);
        Assert.Equal(AgentPgErrorCode.RunCancelled, (await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(run))).Code);
        var iteration = Assert.Single(await h.Client.GetIterationsAsync(run));
        Assert.Equal(BatchStatus.Ended, iteration.BatchStatus);
        Assert.Equal(0, iteration.Usage.InputTokens + iteration.Usage.OutputTokens);
        Assert.DoesNotContain(await h.Client.GetMessagesAsync(session), m => m.Role == MessageRole.Assistant);
    }

    [DatabaseFact]
    public async Task Cancelled_WhileTheBatchIsInProgress_TheBatchIsCancelledOnce_AWatcherSeesTheEnd_AndLaterPollsChangeNothing()
    {
        await using var h = await Harness.StartAsync(db);
        Script(h);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunAsync(session, agent.Id, "go");
        var batchId = await SubmittedBatchAsync(h, run);
        var watching = CollectAsync(h.Client.WatchRunAsync(run));

        await h.Client.CancelRunAsync(run);

        var events = await Eventually.WithinAsync(watching, "the watch to end with the cancellation", s_timeout);
        await h.Claude.WaitForRequestAsync(IsBatchCancel, s_timeout);
        await Eventually.TrueAsync(async () => (await h.Client.GetIterationsAsync(run)).Single().BatchStatus == BatchStatus.Ended, "the batch to be closed");
        await PollerMovedOnAsync(h, agent);
        await AssertCancelledAndUntouchedAsync(h, run, session, events);
        Assert.Equal(2, h.Claude.Requests.Count(IsBatchCreate));   // the run's and the later run's
        Assert.Equal($"/v1/messages/batches/{batchId}/cancel", Assert.Single(h.Claude.Requests, IsBatchCancel).Path);
    }

    [DatabaseFact]
    public async Task Cancelled_WhileAPollOfItsBatchIsUnderWay_TheCancelledBatchIsNotResubmitted()
    {
        // The poller read the run (batch_processing) and asked Claude for its batch; the cancel commits and cancels the batch
        // before the answer comes back, which then says "ended, canceled". Before, the poller took that for a batch cancelled
        // by someone else and created a new batch for the cancelled run (only to cancel it when recording it failed).
        await using var h = await Harness.StartAsync(db);
        Script(h);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunAsync(session, agent.Id, "go");
        var batchId = await SubmittedBatchAsync(h, run);
        using var release = new ManualResetEventSlim();
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.RequestReceived += (_, r) =>
        {
            if (r.Method == "GET" && r.Path == $"/v1/messages/batches/{batchId}" && held.TrySetResult())
            {
                // The fake answers once this returns, with the batch as it is then (a deadline, should the test fail first).
                release.Wait(s_timeout);
            }
        };
        await Eventually.WithinAsync(held.Task, "the poller to ask for the batch", s_timeout);
        var watching = CollectAsync(h.Client.WatchRunAsync(run));

        await h.Client.CancelRunAsync(run);
        await h.Claude.WaitForRequestAsync(IsBatchCancel, s_timeout);
        await Eventually.TrueAsync(async () => (await h.Client.GetIterationsAsync(run)).Single().BatchStatus == BatchStatus.Ended, "the batch to be closed");
        release.Set();

        var events = await Eventually.WithinAsync(watching, "the watch to end with the cancellation", s_timeout);
        await PollerMovedOnAsync(h, agent);
        await AssertCancelledAndUntouchedAsync(h, run, session, events);
        Assert.Equal(2, h.Claude.Requests.Count(IsBatchCreate));   // the run's and the later run's
        Assert.Single(h.Claude.Requests, IsBatchCancel);
    }
}
