using System.Collections.Concurrent;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

public sealed class BatchRunTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static bool IsBatchCreate(RecordedRequest r) => r.Method == "POST" && r.Path == "/v1/messages/batches";

    private static bool IsBatchCancel(RecordedRequest r) => r.Method == "POST" && r.Path.EndsWith("/cancel", StringComparison.Ordinal);

    /// <summary>Two tool rounds, then text; tool ids fixed so two runs can be compared.</summary>
    private static FakeReply TwoToolRounds(FakeRequest request) => request.ToolResults.Count switch
    {
        0 when !request.Messages.ToString().Contains("toolu_r1", StringComparison.Ordinal)
            => FakeReply.Message(FakeContentBlock.Text("Round one."), FakeContentBlock.ToolUse("lookup", new { q = "a" }, "toolu_r1")) with { StopReason = "tool_use" },
        _ when request.ToolResults.Any(t => t.ToolUseId == "toolu_r1")
            => FakeReply.Message(FakeContentBlock.ToolUse("lookup", new { q = "b" }, "toolu_r2")) with { StopReason = "tool_use" },
        _ => FakeReply.Text("Both lookups done: " + request.ToolResults[0].Content),
    };

    private static TestTool Lookup() => new("lookup", (_, input, _) => Task.FromResult("found " + input.GetProperty("q").GetString()));

    [DatabaseFact]
    public async Task RunSyncAsync_TwoToolRounds_PersistsTheSameSequenceAsAStreamingRunAndRecordsBatches()
    {
        await using var h = await Harness.StartAsync(db, tools: Lookup());
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"] });
        h.Claude.Respond(TwoToolRounds);
        var batchSession = await h.Client.NewSessionAsync();
        var streamSession = await h.Client.NewSessionAsync();

        var batch = await Eventually.WithinAsync(h.Client.RunSyncAsync(batchSession, agent.Id, "look twice"), "the batch run", s_timeout);
        var stream = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(streamSession, agent.Id, "look twice"), "the streaming run", s_timeout);

        Assert.Equal("Both lookups done: found b", batch.Text);
        Assert.Equal(stream.Text, batch.Text);
        Assert.Equal(3, batch.IterationCount);
        Assert.Equal(2, batch.ToolIterations);
        static IEnumerable<string> Shape(IReadOnlyList<Message> messages) => messages.Select(m =>
            m.Role + ":" + string.Join(",", m.Content.Select(b => $"{b.Type}/{b.Text}/{b.ToolUseId}/{b.ToolResultForUseId}/{b.ToolContent}")));
        Assert.Equal(Shape(await h.Client.GetMessagesAsync(streamSession)), Shape(await h.Client.GetMessagesAsync(batchSession)));

        var iterations = await h.Client.GetIterationsAsync(batch.RunId);
        Assert.Equal(3, iterations.Count);
        Assert.All(iterations, i =>
        {
            Assert.False(i.IsStreaming);
            Assert.StartsWith("msgbatch_", i.BatchId, StringComparison.Ordinal);
            Assert.Equal(BatchStatus.Ended, i.BatchStatus);
            Assert.NotNull(i.BatchSubmittedAt);
            Assert.NotNull(i.BatchCompletedAt);
            Assert.True(i.BatchExpiresAt > i.BatchSubmittedAt);
        });
        Assert.Equal(3, iterations.Select(i => i.BatchId).Distinct().Count());
        Assert.Equal(3, h.Claude.Requests.Count(IsBatchCreate));
        var run = await h.Client.GetRunAsync(batch.RunId);
        Assert.Equal(RunMode.Batch, run.RunMode);
        Assert.Equal(RunState.Completed, run.State);
    }

    [DatabaseFact]
    public async Task RunAsync_InTransaction_RolledBackSubmitsNothingCommittedIsProcessed()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("batched answer"));
        var session = await h.Client.NewSessionAsync();

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using (var rolledBack = await connection.BeginTransactionAsync())
        {
            await h.Client.RunAsync(rolledBack, session, agent.Id, "never");
            await rolledBack.RollbackAsync();
        }

        Guid committed;
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            committed = await h.Client.RunAsync(transaction, session, agent.Id, "yes");
            await transaction.CommitAsync();
        }

        Assert.Equal("batched answer", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(committed), "the committed batch run", s_timeout)).Text);
        Assert.Single(h.Claude.Requests, IsBatchCreate);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));
    }

    [DatabaseTheory]
    [InlineData("errored")]
    [InlineData("canceled")]
    [InlineData("missing")]
    [InlineData("expired")]
    public async Task Outcome_RetryableOnce_IsResubmittedAndCompletes(string outcome)
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(outcome switch
        {
            "errored" => FakeReply.Error(529, "overloaded_error", "Overloaded"),
            "canceled" => FakeReply.Canceled(),
            "missing" => FakeReply.MissingResult(),
            _ => FakeReply.Expired(),
        });
        h.Claude.Enqueue(FakeReply.Text("second submission worked"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run", s_timeout);

        Assert.Equal("second submission worked", response.Text);
        Assert.Equal(2, h.Claude.Requests.Count(IsBatchCreate));
        var iteration = Assert.Single(await h.Client.GetIterationsAsync(response.RunId));
        Assert.Equal(BatchStatus.Ended, iteration.BatchStatus);
    }

    [DatabaseFact]
    public async Task Outcome_ErroredNotRetryable_FailsWithTheApiMessage()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Error(400, "invalid_request_error", "messages.0: bad content"));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"));

        Assert.Equal(AgentPgErrorCode.RunFailed, ex.Code);
        Assert.Equal("batch_error", ex.Context["error_type"]);
        Assert.Contains("invalid_request_error: messages.0: bad content", ex.Message, StringComparison.Ordinal);
        Assert.Single(h.Claude.Requests, IsBatchCreate);
    }

    [DatabaseFact]
    public async Task Outcome_ResultTheDatabaseRefuses_FailsTheRunInsteadOfPollingForever()
    {
        // A poison result: recording it fails the same way at every poll.
        await using var refuse = await db.TriggerAsync("refuse_poison", "BEFORE INSERT", "agentpg_messages",
            "RAISE EXCEPTION 'injected: this content is refused';", when: "NEW.content -> 0 ->> 'text' = 'poison'");
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("poison"));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () =>
            await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to end", TimeSpan.FromSeconds(30)));

        Assert.Equal("processing_error", ex.Context["error_type"]);
        Assert.Contains("injected: this content is refused", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Retrieve_BatchNotFound_FailsTheRunWithBatchError()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { BatchProcessingDelay = TimeSpan.FromHours(1) });
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("never collected"));
        var run = await h.Client.RunAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        var batchId = "";
        await Eventually.TrueAsync(async () => (batchId = (await h.Client.GetIterationsAsync(run)).SingleOrDefault()?.BatchId ?? "") != "", "the batch to be submitted");

        Assert.True(h.Claude.ForgetBatch(batchId));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run to end", TimeSpan.FromSeconds(30)));
        Assert.Equal("batch_error", ex.Context["error_type"]);
        Assert.Contains($"Message batch {batchId} of iteration 1 cannot be polled: Claude API error 404", ex.Message, StringComparison.Ordinal);
        Assert.Contains("deleted, or created with another API key or workspace", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Outcome_ErroredRetryableEveryTime_WithModelUnavailableTimeoutZero_FailsAfterMaxModelRetries()
    {
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.MaxModelRetries = 2;
            o.ModelUnavailableTimeout = TimeSpan.Zero;
        });
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Error(529, "overloaded_error", "Overloaded"));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"));

        Assert.Equal("batch_error", ex.Context["error_type"]);
        Assert.Contains("after 2 resubmissions", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, h.Claude.Requests.Count(IsBatchCreate));
    }

    [DatabaseTheory]
    [InlineData("canceled", "was canceled at the API")]
    [InlineData("missing", "has no line in the batch results")]
    public async Task Outcome_CanceledOrMissingEveryTime_FailsNamingTheCause(string outcome, string expected)
    {
        await using var h = await Harness.StartAsync(db, o => o.MaxModelRetries = 1);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => outcome == "canceled" ? FakeReply.Canceled() : FakeReply.MissingResult());

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"));

        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
        Assert.Equal(2, h.Claude.Requests.Count(IsBatchCreate));
    }

    [DatabaseFact]
    public async Task Outcome_ExpiredTwice_FailsWithAClearMessage()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Expired());

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"));

        Assert.Equal("batch_expired", ex.Context["error_type"]);
        Assert.Contains("expired twice", ex.Message, StringComparison.Ordinal);
        Assert.Equal(2, h.Claude.Requests.Count(IsBatchCreate));
    }

    [DatabaseFact]
    public async Task Outcome_PastItsExpiryWithoutAnEnd_IsCancelledAndResubmitted()
    {
        // The client's clock runs two days ahead: every in-progress batch looks past its 24-hour expiry.
        await using var h = await Harness.StartAsync(db, o => o.TimeProvider = new OffsetTimeProvider(TimeSpan.FromDays(2)));
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("never ends") with { Delay = Timeout.InfiniteTimeSpan });

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"));

        // The first batch hung past its expiry: cancelled and resubmitted once; the resubmission too, so the run fails.
        Assert.Equal("batch_expired", ex.Context["error_type"]);
        Assert.Equal(2, h.Claude.Requests.Count(IsBatchCreate));
        await Eventually.TrueAsync(() => h.Claude.Requests.Count(IsBatchCancel) >= 2, "both hung batches to be cancelled at the API");
    }

    [DatabaseFact]
    public async Task SubmissionFailsAfterTheBatchWasCreated_TheBatchIsCancelledAtTheApi()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("late") with { Delay = TimeSpan.FromSeconds(30) });
        var session = await h.Client.NewSessionAsync();
        var runId = Guid.Empty;
        var cancelled = new TaskCompletionSource();
        // The run is cancelled the moment its batch is created, so recording the batch finds the claim gone.
        h.Claude.RequestReceived += (_, request) =>
        {
            if (IsBatchCreate(request))
            {
                h.Client.CancelRunAsync(runId).ContinueWith(_ => cancelled.TrySetResult(), TaskScheduler.Default).Wait();
            }
        };

        runId = await h.Client.RunAsync(session, agent.Id, "go");
        await Eventually.WithinAsync(cancelled.Task, "the cancel");

        var cancel = await h.Claude.WaitForRequestAsync(IsBatchCancel, TimeSpan.FromSeconds(20));
        var create = h.Claude.Requests.Single(IsBatchCreate);
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(runId)).State);
        Assert.StartsWith("/v1/messages/batches/msgbatch_", cancel.Path, StringComparison.Ordinal);
        Assert.NotNull(create);
    }

    [DatabaseFact]
    public async Task CancelRunAsync_DuringBatchPending_CancelsTheBatchAndALateResultChangesNothing()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        // The batch would take an hour to process: the run cannot complete before the test cancels it, however long a loaded
        // machine takes to show the test the submitted batch.
        h.Claude.Enqueue(FakeReply.Text("late result") with { Delay = TimeSpan.FromHours(1) });
        var session = await h.Client.NewSessionAsync();
        var run = await h.Client.RunAsync(session, agent.Id, "go");
        await Eventually.TrueAsync(async () => (await h.Client.GetRunAsync(run)).State is RunState.BatchPending or RunState.BatchProcessing, "the batch to be submitted");

        await h.Client.CancelRunAsync(run);

        var cancel = await h.Claude.WaitForRequestAsync(IsBatchCancel, TimeSpan.FromSeconds(20));
        var iteration = Assert.Single(await h.Client.GetIterationsAsync(run));
        Assert.Contains(iteration.BatchId!, cancel.Path, StringComparison.Ordinal);
        await Eventually.TrueAsync(async () => (await h.Client.GetIterationsAsync(run)).Single().BatchStatus == BatchStatus.Ended, "the iteration's batch to be closed");
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(run)).State);
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(run));
        Assert.Equal(AgentPgErrorCode.RunCancelled, ex.Code);
        Assert.DoesNotContain(await h.Client.GetMessagesAsync(session), m => m.Role == MessageRole.Assistant);
    }

    [DatabaseFact]
    public async Task TwoInstances_ShareBatchWorkWithoutDoubleSubmissionOrProcessing()
    {
        var executions = new ConcurrentDictionary<Guid, int>();
        TestTool Tool() => new("mark", (ctx, _, _) =>
        {
            executions.AddOrUpdate(ctx.ToolExecutionId, 1, (_, n) => n + 1);
            return Task.FromResult("marked");
        });
        await using var h = await Harness.StartAsync(db, o => o.MaxConcurrentRuns = 4, start: true, Tool());
        var second = await h.AddClientAsync(o => o.MaxConcurrentRuns = 4, start: true, Tool());
        var agent = await h.AgentAsync(a => a with { Tools = ["mark"] });
        h.Claude.Respond(request => request.ToolResults.Count > 0 ? FakeReply.Text("done") : FakeReply.ToolUse("mark", new { }));

        var runs = new List<Guid>();
        for (var i = 0; i < 30; i++)
        {
            runs.Add(await (i % 2 == 0 ? h.Client : second).RunAsync(await h.Client.NewSessionAsync(), agent.Id, "run " + i));
        }

        await Eventually.WithinAsync(Task.WhenAll(runs.Select(r => h.Client.WaitForRunAsync(r))), "30 batch runs", TimeSpan.FromSeconds(120));

        Assert.Equal(60, h.Claude.Requests.Count(IsBatchCreate));
        Assert.Equal(30, executions.Count);
        Assert.All(executions.Values, n => Assert.Equal(1, n));
        Assert.Equal(120L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_messages WHERE run_id = ANY($1)", runs.ToArray()));
        Assert.Equal(2L, await db.ScalarAsync<long>(
            "SELECT count(DISTINCT instance_id) FROM {schema}.agentpg_iterations WHERE run_id = ANY($1)", runs.ToArray()));
    }

    private sealed class OffsetTimeProvider(TimeSpan offset) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + offset;
    }
}
