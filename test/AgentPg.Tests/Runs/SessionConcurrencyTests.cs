using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

public sealed class SessionConcurrencyTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task Queue_TwoRootRunsInOneSession_RunOneAfterTheOtherWithValidHistory()
    {
        await using var h = await Harness.StartAsync(db, o => o.MaxConcurrentStreamingRuns = 5);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var first = Guid.Empty;
        var firstArrived = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseFirst = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // The first run as the second run's model call finds it: proof of the order that does not compare the clocks of two
        // transactions (the second's started_at is its claim transaction's start, which can precede the first's finalizing
        // transaction although the claim's snapshot saw it committed).
        var firstWhenTheSecondCalls = new TaskCompletionSource<Run>(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(async (r, cancellationToken) =>
        {
            if (r.LastUserText == "first")
            {
                firstArrived.TrySetResult();
                await releaseFirst.Task.WaitAsync(cancellationToken);
                return FakeReply.Text("answer one");
            }

            firstWhenTheSecondCalls.TrySetResult(await h.Client.GetRunAsync(first, cancellationToken));
            return FakeReply.Text("answer two");
        });

        first = await h.Client.RunFastAsync(session, agent.Id, "first");
        var second = await h.Client.RunFastAsync(session, agent.Id, "second");
        await Eventually.WithinAsync(firstArrived.Task, "the first run's request");

        // While the first streams, the second waits in pending and its prompt is not in the conversation yet.
        Assert.Equal(RunState.Pending, (await h.Client.GetRunAsync(second)).State);
        Assert.DoesNotContain(await h.Client.GetMessagesAsync(session), m => m.Content.Any(b => b.Text == "second"));

        releaseFirst.SetResult();
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(second), "the second run");

        var secondRequest = h.Claude.Requests.Where(r => r.IsMessagesCall).Last();
        var sent = secondRequest.Body!.Value.GetProperty("messages");
        Assert.Equal(3, sent.GetArrayLength());
        Assert.Equal("answer one", sent[1].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(["first", "answer one", "second", "answer two"],
            (await h.Client.GetMessagesAsync(session)).Select(m => m.Content.Single().Text));
        var firstSeen = await firstWhenTheSecondCalls.Task;
        Assert.True(firstSeen.State == RunState.Completed, $"the first run was {firstSeen.State} when the second run called the model");
        Assert.NotNull(firstSeen.FinalizedAt);
    }

    [DatabaseTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Queue_TheNextRunStartsOnTheFinishNotificationNotAtThePoll(bool cancelFirst)
    {
        // Polling is out of the picture: only agentpg_run_finalized (carrying the session's next run mode) can start the
        // second run, whether the first completes (notification sent by the worker) or is cancelled (sent by the trigger).
        await using var h = await Harness.StartAsync(db, o => o.RunPollInterval = TimeSpan.FromMinutes(10));
        var producer = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var held = new HeldRequest(h.Claude, "first", r => FakeReply.Text(r.LastUserText == "first" ? "answer one" : "answer two"));

        var first = await producer.RunFastAsync(session, agent.Id, "first");
        await Eventually.WithinAsync(held.Arrived, "the first run's request");
        var second = await producer.RunFastAsync(session, agent.Id, "second");
        if (cancelFirst)
        {
            await producer.CancelRunAsync(first);
        }
        else
        {
            held.Release();
        }

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(second), "the second run, woken by the first one's end");
        Assert.Equal("answer two", response.Text);
        Assert.Equal(cancelFirst ? RunState.Cancelled : RunState.Completed, (await h.Client.GetRunAsync(first)).State);
    }

    [DatabaseFact]
    public async Task Interrupt_CancelsTheActiveRunAndRunsTheNewOne()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var firstArrived = new TaskCompletionSource();
        h.Claude.Respond(async (request, ct) =>
        {
            if (request.LastUserText == "long task")
            {
                firstArrived.TrySetResult();
                await new TaskCompletionSource().Task.WaitAsync(ct);
            }

            return FakeReply.Text("new answer");
        });
        var first = await h.Client.RunFastAsync(session, agent.Id, "long task");
        await Eventually.WithinAsync(firstArrived.Task, "the first run's request");

        var second = await h.Client.RunFastAsync(session, agent.Id, "do this instead", new RunOptions { ConcurrencyPolicy = ConcurrencyPolicy.Interrupt });

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(second), "the interrupting run");
        Assert.Equal("new answer", response.Text);
        var cancelled = await h.Client.GetRunAsync(first);
        Assert.Equal(RunState.Cancelled, cancelled.State);
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(first));
        Assert.Equal(AgentPgErrorCode.RunCancelled, ex.Code);
    }
}
