using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>A batch's life at Claude as someone else changes it (the console, the 24-hour expiry), and what the run and its
/// session do next.</summary>
public sealed class BatchLifecycleTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static bool IsBatchCreate(RecordedRequest r) => r.Method == "POST" && r.Path == "/v1/messages/batches";

    private static async Task<string> SubmittedBatchAsync(Harness h, Guid run)
    {
        var batchId = "";
        await Eventually.TrueAsync(async () => (batchId = (await h.Client.GetIterationsAsync(run)).SingleOrDefault()?.BatchId ?? "") != "",
            "the run's batch to be submitted");
        return batchId;
    }

    [DatabaseFact]
    public async Task BatchCancelledAtTheConsoleWhileInProgress_TheRequestGoesIntoANewBatchAndTheRunCompletesOnce()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        // The first batch would take an hour; someone cancels it in the console meanwhile.
        h.Claude.Enqueue(FakeReply.Text("never delivered") with { Delay = TimeSpan.FromHours(1) });
        h.Claude.Enqueue(FakeReply.Text("from the second batch"));
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunAsync(session, agent.Id, "go");
        var first = await SubmittedBatchAsync(h, run);

        var console = h.Claude.CreateClient();
        await console.Messages.Batches.Cancel(first);

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run", s_timeout);
        Assert.Equal("from the second batch", response.Text);
        Assert.Equal(2, h.Claude.Requests.Count(IsBatchCreate));
        var iteration = Assert.Single(await h.Client.GetIterationsAsync(run));
        Assert.NotEqual(first, iteration.BatchId);
        Assert.Equal(BatchStatus.Ended, iteration.BatchStatus);
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.Equal(["user:go", "assistant:from the second batch"], messages.Select(m => $"{m.Role.ToString().ToLowerInvariant()}:{m.Content[0].Text}"));
    }

    [DatabaseTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task RunCancelledWhileItsBatchIsInProgress_TheSessionGoesOnWithTheNextRun(bool nextInBatch)
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("late") with { Delay = TimeSpan.FromHours(1) });
        var session = await h.Client.NewSessionAsync();
        var cancelled = await h.Client.RunAsync(session, agent.Id, "first question");
        await SubmittedBatchAsync(h, cancelled);

        await h.Client.CancelRunAsync(cancelled);
        h.Claude.Enqueue(FakeReply.Text("second answer"));
        var next = nextInBatch
            ? await h.Client.RunAsync(session, agent.Id, "second question")
            : await h.Client.RunFastAsync(session, agent.Id, "second question");

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(next), "the next run", s_timeout);
        Assert.Equal("second answer", response.Text);
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(cancelled)).State);
        var last = h.Claude.Requests.Last(r => nextInBatch ? IsBatchCreate(r) : r.IsMessagesCall);
        var sent = (nextInBatch ? last.Body!.Value.GetProperty("requests")[0].GetProperty("params") : last.Body!.Value).GetProperty("messages").GetRawText();
        Assert.DoesNotContain("first question", sent, StringComparison.Ordinal);
        Assert.Contains("second question", sent, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task MaxConcurrentRuns_BoundsSubmissionsNotTheBatchesWaitingAtClaude()
    {
        // A submitted run holds no slot while its batch waits: six runs on an instance with two slots all reach Claude.
        await using var h = await Harness.StartAsync(db, o => o.MaxConcurrentRuns = 2);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("in an hour") with { Delay = TimeSpan.FromHours(1) });
        var runs = new List<Guid>();
        for (var i = 0; i < 6; i++)
        {
            runs.Add(await h.Client.RunAsync(await h.Client.NewSessionAsync(), agent.Id, "go " + i));
        }

        await Eventually.TrueAsync(async () =>
        {
            foreach (var run in runs)
            {
                if ((await h.Client.GetRunAsync(run)).State is not (RunState.BatchPending or RunState.BatchProcessing))
                {
                    return false;
                }
            }

            return true;
        }, "all six runs to wait at Claude");
        Assert.Equal(6, h.Claude.Requests.Count(IsBatchCreate));
        foreach (var run in runs)
        {
            await h.Client.CancelRunAsync(run);
        }
    }

    [DatabaseFact]
    public async Task WatchingABatchRun_ShowsItsStatesAndTheStoredAnswerWithoutTextDeltas()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var release = new TaskCompletionSource();
        h.Claude.Enqueue(FakeReply.Text("the batched answer") with { Delay = TimeSpan.FromHours(1) });
        var run = await h.Client.RunAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        var batchId = await SubmittedBatchAsync(h, run);

        var events = new List<RunEvent>();
        var watching = Task.Run(async () =>
        {
            await foreach (var e in h.Client.WatchRunAsync(run))
            {
                events.Add(e);
                if (e is RunStateChangedEvent { State: RunState.BatchProcessing })
                {
                    release.TrySetResult();
                }
            }
        });
        // The batch stays in progress until the watcher saw the run wait for it; then someone cancels it at the console and
        // the request goes into a second batch, answered at once.
        await Eventually.WithinAsync(release.Task, "the watcher to see the run in batch_processing", s_timeout);
        h.Claude.Enqueue(FakeReply.Text("the batched answer"));
        await h.Claude.CreateClient().Messages.Batches.Cancel(batchId);
        await Eventually.WithinAsync(watching, "the watch to end with the run", s_timeout);

        Assert.DoesNotContain(events, e => e is TextDeltaEvent or ThinkingDeltaEvent);
        Assert.Contains(events, e => e is IterationStartedEvent { IterationNumber: 1 });
        Assert.Contains(events, e => e is MessageStoredEvent { Message.Role: MessageRole.Assistant } m && m.Message.Content[0].Text == "the batched answer");
        Assert.Equal(RunState.Completed, Assert.IsType<RunFinishedEvent>(events[^1]).State);
    }
}
