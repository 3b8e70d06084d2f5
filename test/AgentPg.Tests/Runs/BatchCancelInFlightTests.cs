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

    /// <summary>A batch run ("go", scripted to take an hour at Claude) whose batch was submitted.</summary>
    private static async Task<(AgentDefinition Agent, Guid Session, Guid Run, string BatchId)> InFlightBatchRunAsync(Harness h)
    {
        Script(h);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunAsync(session, agent.Id, "go");
        return (agent, session, run, await SubmittedBatchAsync(h, run));
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
        var (agent, session, run, batchId) = await InFlightBatchRunAsync(h);
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
        var (agent, session, run, batchId) = await InFlightBatchRunAsync(h);
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

    [DatabaseFact]
    public async Task Cancelled_WhileItWaitsToResubmitAfterAnOverloadedResult_NoCancelIsSentForTheEndedBatch()
    {
        // A batch whose result errored overloaded has ended, and the run waits (batch_resubmit_at) to submit its request again
        // in a new batch. The cancel took that ended batch for one in flight: it marked the iteration canceling, and the
        // poller sent Claude a cancel for a batch that had ended.
        await using var h = await Harness.StartAsync(db);
        h.Claude.Respond(r => r.LastUserText == "go" ? FakeReply.Error(529, "overloaded_error", "Overloaded") : FakeReply.Text("answered"));
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunAsync(session, agent.Id, "go");
        // The wait (0.5–1 s at first, doubling) is made an hour long while it is still ahead, so the cancel comes during it:
        // a poll resubmits only once the wait is over, and this moves only a wait that is not.
        await Eventually.TrueAsync(async () => await db.ExecuteAsync(
                "UPDATE {schema}.agentpg_iterations SET batch_resubmit_at = now() + interval '1 hour' WHERE run_id = $1 AND batch_resubmit_at > now()",
                run) == 1,
            "the run to wait to resubmit its request after an overloaded result");
        // A client that processes nothing cancels: a batch it took for one in flight is left to the started instance's poller,
        // whose next tick (PollerMovedOnAsync) would send its cancel.
        var bystander = await h.AddClientAsync(start: false);

        await bystander.CancelRunAsync(run);

        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(run)).State);
        Assert.Equal(AgentPgErrorCode.RunCancelled, (await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(run))).Code);
        await PollerMovedOnAsync(h, agent);
        Assert.DoesNotContain(h.Claude.Requests, IsBatchCancel);
        var iteration = Assert.Single(await h.Client.GetIterationsAsync(run));
        Assert.Equal(BatchStatus.Ended, iteration.BatchStatus);
        Assert.Equal("cancelled", iteration.ErrorType);
        Assert.NotNull(iteration.CompletedAt);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_iterations WHERE run_id = $1 AND batch_resubmit_at IS NOT NULL", run));
    }

    /// <summary>A batch run whose run a client that processes nothing cancelled: its batch is left <c>canceling</c> for a
    /// started instance to cancel at the API.</summary>
    private static async Task<(Guid Run, string BatchId)> CancellingBatchAsync(Harness h)
    {
        var (_, _, run, batchId) = await InFlightBatchRunAsync(h);
        var bystander = await h.AddClientAsync(start: false);
        await bystander.CancelRunAsync(run);
        Assert.Equal(BatchStatus.Canceling, Assert.Single(await h.Client.GetIterationsAsync(run)).BatchStatus);
        return (run, batchId);
    }

    [DatabaseFact]
    public async Task TheRunsCancelAndThePoller_CancelTheBatchAtTheApiOnce()
    {
        // A run's cancel cancels its batch in the background while the poller takes 'canceling' batches: both sent the cancel
        // when the poller's tick came before the background task (seen once in a loaded suite). Each takes the batch first now.
        await using var h = await Harness.StartAsync(db, o => o.BatchPollInterval = TimeSpan.FromHours(1));
        var (run, batchId) = await CancellingBatchAsync(h);
        var api = new AgentPg.Claude.BatchApi(h.Client.Engine);

        await Task.WhenAll(api.CancelQuietlyAsync([batchId], take: true, CancellationToken.None), api.CancelQuietlyAsync([batchId], take: true, CancellationToken.None));

        Assert.Equal($"/v1/messages/batches/{batchId}/cancel", Assert.Single(h.Claude.Requests, IsBatchCancel).Path);
        Assert.Equal(BatchStatus.Ended, Assert.Single(await h.Client.GetIterationsAsync(run)).BatchStatus);
    }

    [DatabaseFact]
    public async Task ACancelTheApiRefused_IsPutBackForThePollerToTryAgain()
    {
        await using var h = await Harness.StartAsync(db, o => o.BatchPollInterval = TimeSpan.FromHours(1));
        var (run, batchId) = await CancellingBatchAsync(h);
        h.Claude.FailRequests(r => IsBatchCancel(r) ? new FakeApiError(500, "api_error", "Internal server error") { ShouldRetry = false } : null);

        await new AgentPg.Claude.BatchApi(h.Client.Engine).CancelQuietlyAsync([batchId], take: true, CancellationToken.None);

        Assert.Single(h.Claude.Requests, IsBatchCancel);
        Assert.Equal(BatchStatus.Canceling, Assert.Single(await h.Client.GetIterationsAsync(run)).BatchStatus);
    }
}
