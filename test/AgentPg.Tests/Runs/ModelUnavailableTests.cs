using System.Net;
using System.Net.Sockets;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary><see cref="AgentPgOptions.ModelUnavailableTimeout"/>: a run waits out Claude being rate limited, overloaded or
/// unreachable instead of failing, for streamed answers and for a batch's creation.</summary>
public sealed class ModelUnavailableTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    // The SDK honours retry-after (when ModelUnavailableTimeout is zero it retries itself): 1 ms keeps its retries fast.
    private static readonly TimeSpan s_sdkRetryAfter = TimeSpan.FromMilliseconds(1);

    private static FakeReply Overloaded => FakeReply.Error(529, "overloaded_error", "Overloaded", s_sdkRetryAfter);

    private static bool IsBatchCreate(RecordedRequest r) => r.Method == "POST" && r.Path == "/v1/messages/batches";

    [DatabaseFact]
    public async Task OverloadedThenRateLimited_TheRunWaitsItOutAndCompletes()
    {
        var logs = new LogCapture();
        await using var h = await Harness.StartAsync(db, o => o.LoggerFactory = logs);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(Overloaded, Overloaded,
            FakeReply.Error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", s_sdkRetryAfter),
            FakeReply.Text("finally"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        Assert.Equal("finally", response.Text);
        // AgentPg owns the retries of an error answer while it waits Claude out: one request per attempt, none by the SDK.
        var calls = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
        Assert.Equal(4, calls.Count);
        Assert.All(calls, r => Assert.Equal(0, r.RetryCount));
        var waits = logs.WithEventId(2009);
        Assert.Equal(3, waits.Count);
        Assert.Contains("Claude API error 529 overloaded_error: Overloaded", waits[0].Message, StringComparison.Ordinal);
        Assert.Contains("Claude API error 429 rate_limit_error", waits[2].Message, StringComparison.Ordinal);
        var run = await h.Client.GetRunAsync(response.RunId);
        Assert.Equal(RunState.Completed, run.State);
        Assert.Equal(0, run.RescueAttempts);
        Assert.Single(await h.Client.GetIterationsAsync(response.RunId));
    }

    [DatabaseFact]
    public async Task AServersRetryAfter_IsAFloorForTheNextWait()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var retryAfter = TimeSpan.FromMilliseconds(1500);
        h.Claude.Enqueue(FakeReply.Error(529, "overloaded_error", "Overloaded", retryAfter), FakeReply.Text("after the retry-after"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        Assert.Equal("after the retry-after", response.Text);
        var calls = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
        Assert.Equal(2, calls.Count);
        // The first backoff is 0.5–1 s: the server's 1.5 s wins. Retried by AgentPg (the SDK would count it as its retry 1).
        Assert.True(calls[1].ReceivedAt - calls[0].ReceivedAt >= retryAfter - TimeSpan.FromMilliseconds(50),
            $"retried after {(calls[1].ReceivedAt - calls[0].ReceivedAt).TotalMilliseconds} ms");
        Assert.Equal(0, calls[1].RetryCount);
    }

    [DatabaseFact]
    public async Task ARetryAfterLongerThanAQuarterOfTheRescueTimeout_IsCappedAndTheRunIsNotRescued()
    {
        // The SDK obeyed any retry-after inside the call, reporting no progress: a 3 s retry-after twice held the run for
        // 6 s, and a rescue timeout of 2 s took it from its live worker. AgentPg waits at most a quarter of the rescue timeout:
        // 15 s of 60 s here, a wait the test holds and fires once the worker created it (a 120 s one would never be held).
        // Before, real 2 s waits against an 8 s rescue timeout raced a loaded machine: at a load of 80 the claim to the first
        // call's answer took longer than 8 s, the leader rescued the run before its first wait, and Claude got a fourth call
        // (5 of 20 runs; once: calls at 0 ms, 17 ms, 5.8 s and 7.4 s, rescued once, claim epoch 3).
        var cappedWait = new HeldTimeouts(TimeSpan.FromSeconds(15), typeof(global::AgentPg.Runs.RunProcessor));
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.RunRescue.Timeout = TimeSpan.FromSeconds(60);
            o.RunRescue.Interval = TimeSpan.FromMilliseconds(200);
            o.LeaderTtl = TimeSpan.FromSeconds(1);
            o.TimeProvider = cappedWait;
        });
        var agent = await h.AgentAsync();
        var longRetryAfter = FakeReply.Error(529, "overloaded_error", "Overloaded", TimeSpan.FromSeconds(120));
        // Answered from the third call on, so that a fourth call (a rescue) is reported below with its timeline instead of
        // failing the run on an empty reply queue.
        var answered = 0;
        h.Claude.Respond(_ => Interlocked.Increment(ref answered) <= 2 ? longRetryAfter : FakeReply.Text("not rescued"));
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        // One capped wait after each of the two overloaded answers.
        await cappedWait.FireNextAsync();
        await cappedWait.FireNextAsync();

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run to complete", TimeSpan.FromSeconds(60));

        Assert.Equal("not rescued", response.Text);
        var calls = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
        var run = await h.Client.GetRunAsync(response.RunId);
        var timeline = string.Join(", ", calls.Select(c => $"{(c.ReceivedAt - calls[0].ReceivedAt).TotalMilliseconds:0} ms"));
        Assert.True(run.RescueAttempts == 0 && run.ClaimEpoch == 1 && calls.Count == 3,
            $"{calls.Count} calls (at {timeline} after the first), the run rescued {run.RescueAttempts} times (claim epoch {run.ClaimEpoch})");
    }

    [DatabaseFact]
    public async Task ARunRescuedWhileItWaits_MakesNoFurtherRequestToClaude()
    {
        // Before, the attempt after the wait was sent anyway and the old holder learnt of the lost claim only at its next fenced
        // write: against the real API a paid answer thrown away (here the second request, answered, then log 2001 at the
        // recording). The wait is a retry-after capped at a quarter of the rescue timeout (15 s), held until the claim is gone.
        var logs = new LogCapture();
        var heldWait = new HeldTimeouts(TimeSpan.FromSeconds(15), typeof(global::AgentPg.Runs.RunProcessor));
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.RunRescue.Timeout = TimeSpan.FromSeconds(60);
            o.TimeProvider = heldWait;
            o.LoggerFactory = logs;
        });
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Error(529, "overloaded_error", "Overloaded", TimeSpan.FromSeconds(120)), FakeReply.Text("thrown away"));
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");
        await heldWait.WaitForTimerAsync();

        // What a rescue does to the claim while the worker waits.
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET claim_epoch = claim_epoch + 1 WHERE id = $1", runId);
        heldWait.FireAll();

        await Eventually.TrueAsync(() => Task.FromResult(logs.WithEventId(2001).Count > 0), "the old holder to drop the run (log 2001)", TimeSpan.FromSeconds(60));
        Assert.Single(h.Claude.Requests, r => r.IsMessagesCall);
        Assert.DoesNotContain(await h.Client.GetMessagesAsync((await h.Client.GetRunAsync(runId)).SessionId), m => m.Role == MessageRole.Assistant);
        await h.Client.CancelRunAsync(runId);
    }

    [DatabaseFact]
    public async Task ABatchRunRescuedWhileItsCreationWaits_CreatesNoFurtherBatch()
    {
        // As for a stream: before, the batch was created after the wait, its recording failed the fence, and the batch was
        // cancelled at the API (created for nothing).
        var logs = new LogCapture();
        var heldWait = new HeldTimeouts(TimeSpan.FromSeconds(15), typeof(global::AgentPg.Workers.BatchSubmitter));
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.RunRescue.Timeout = TimeSpan.FromSeconds(60);
            o.TimeProvider = heldWait;
            o.LoggerFactory = logs;
        });
        var agent = await h.AgentAsync();
        var failures = 0;
        h.Claude.FailRequests(r => IsBatchCreate(r) && Interlocked.Increment(ref failures) <= 1
            ? new FakeApiError(529, "overloaded_error", "Overloaded") { RetryAfter = TimeSpan.FromSeconds(120) }
            : null);
        h.Claude.Respond(_ => FakeReply.Text("thrown away"));
        var runId = await h.Client.RunAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await heldWait.WaitForTimerAsync();

        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET claim_epoch = claim_epoch + 1 WHERE id = $1", runId);
        heldWait.FireAll();

        await Eventually.TrueAsync(() => Task.FromResult(logs.WithEventId(2001).Count > 0), "the old holder to drop the run (log 2001)", TimeSpan.FromSeconds(60));
        Assert.Single(h.Claude.Requests, IsBatchCreate);
        await h.Client.CancelRunAsync(runId);
    }

    [DatabaseFact]
    public async Task TheServerSayingDoNotRetry_FailsTheRunAtOnce()
    {
        await using var h = await Harness.StartAsync(db, o => o.ModelUnavailableTimeout = TimeSpan.FromSeconds(3));
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Error(529, "overloaded_error", "Overloaded", shouldRetry: false));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"));

        Assert.Equal("model_error", ex.Context["error_type"]);
        Assert.Contains("Claude API error 529 overloaded_error: Overloaded", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("ModelUnavailableTimeout", ex.Message, StringComparison.Ordinal);
        Assert.Single(h.Claude.Requests, r => r.IsMessagesCall);
    }

    [DatabaseFact]
    public async Task OverloadedInsideTheStreamLongerThanMaxModelRetries_TheRunWaitsAndCompletes()
    {
        await using var h = await Harness.StartAsync(db, o => o.MaxModelRetries = 1);
        var agent = await h.AgentAsync();
        var fault = FakeReply.Text("cut") with { StreamFault = FakeStreamFault.Error(1, "overloaded_error", "Overloaded") };
        h.Claude.Enqueue(fault, fault, fault, fault, FakeReply.Text("recovered"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        Assert.Equal("recovered", response.Text);
        Assert.Equal(5, h.Claude.Requests.Count(r => r.IsMessagesCall));
    }

    [DatabaseFact]
    public async Task UnavailableForLongerThanTheTimeout_FailsSayingForHowLongAndWhy()
    {
        await using var h = await Harness.StartAsync(db, o => o.ModelUnavailableTimeout = TimeSpan.FromSeconds(1));
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("cut") with { StreamFault = FakeStreamFault.Error(1, "overloaded_error", "Overloaded") });

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"));

        Assert.Equal("model_error", ex.Context["error_type"]);
        Assert.Contains("Claude's streamed answer failed", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Claude stayed unavailable for longer than AgentPgOptions.ModelUnavailableTimeout (1 s)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("last error: overloaded_error: Overloaded", ex.Message, StringComparison.Ordinal);
        Assert.InRange(h.Claude.Requests.Count(r => r.IsMessagesCall), 2, 4);
    }

    [DatabaseFact]
    public async Task TimeoutZero_AnHttp529FailsAfterTheSdkRetriesAsBefore()
    {
        await using var h = await Harness.StartAsync(db, o => o.ModelUnavailableTimeout = TimeSpan.Zero);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => Overloaded);

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"));

        Assert.Equal("model_error", ex.Context["error_type"]);
        Assert.Contains("Claude API error 529 overloaded_error: Overloaded", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("ModelUnavailableTimeout", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, h.Claude.Requests.Count(r => r.IsMessagesCall));
    }

    [DatabaseFact]
    public async Task ARefusal_IsNeverWaitedFor()
    {
        await using var h = await Harness.StartAsync(db, o => o.ModelUnavailableTimeout = Timeout.InfiniteTimeSpan);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Error(403, "permission_error", "Your API key does not have permission to use the specified resource."));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"));

        Assert.Contains("Claude API error 403 permission_error", ex.Message, StringComparison.Ordinal);
        Assert.Single(h.Claude.Requests, r => r.IsMessagesCall);
    }

    [DatabaseFact]
    public async Task CancellingARunThatWaits_EndsTheWaitAtOnce()
    {
        await using var h = await Harness.StartAsync(db, o => o.ModelUnavailableTimeout = Timeout.InfiniteTimeSpan);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Error(429, "rate_limit_error", "rate limited", s_sdkRetryAfter));
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");
        // Four calls: the waits have grown past a few seconds by then (1, 2, 4 s, jittered down to half).
        await Eventually.TrueAsync(() => Task.FromResult(h.Claude.Requests.Count(r => r.IsMessagesCall) >= 4), "four calls rate limited", TimeSpan.FromSeconds(60));

        await h.Client.CancelRunAsync(runId);

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the cancelled run to end", TimeSpan.FromSeconds(30)));
        Assert.Equal(AgentPgErrorCode.RunCancelled, ex.Code);
        var calls = h.Claude.Requests.Count(r => r.IsMessagesCall);
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(runId)).State);
        Assert.Equal(calls, h.Claude.Requests.Count(r => r.IsMessagesCall));
    }

    [DatabaseFact]
    public async Task AWaitLongerThanTheRescueTimeout_IsNotRescued()
    {
        // The waits never exceed a quarter of RunRescue.Timeout, and the worker records progress meanwhile: the leader
        // (this client, rescuing every 200 ms) must not take the waiting run for a stuck one.
        var rescueTimeout = TimeSpan.FromSeconds(3);
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.ModelUnavailableTimeout = Timeout.InfiniteTimeSpan;
            o.RunRescue.Timeout = rescueTimeout;
            o.RunRescue.Interval = TimeSpan.FromMilliseconds(200);
            o.LeaderTtl = TimeSpan.FromSeconds(1);
        });
        var agent = await h.AgentAsync();
        var available = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        h.Claude.Respond(_ => available.Task.IsCompleted ? FakeReply.Text("after the outage") : Overloaded);
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");

        // Until the outage has lasted three rescue timeouts, by the fake's own record of the requests.
        await Eventually.TrueAsync(() =>
        {
            var calls = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
            return Task.FromResult(calls.Count > 1 && calls[^1].ReceivedAt - calls[0].ReceivedAt > 3 * rescueTimeout);
        }, "an outage three rescue timeouts long", TimeSpan.FromSeconds(90));
        available.SetResult();

        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run to complete after the outage", TimeSpan.FromSeconds(30));
        Assert.Equal("after the outage", response.Text);
        var run = await h.Client.GetRunAsync(runId);
        Assert.Equal(0, run.RescueAttempts);
        Assert.Equal(1, run.ClaimEpoch);
        Assert.Single(await h.Client.GetIterationsAsync(runId));
    }

    [DatabaseFact]
    public async Task ClaudeUnreachable_IsWaitedForThenFailsNamingTheConnectionError()
    {
        // A port nothing listens on: every connection is refused.
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop();
        var logs = new LogCapture();
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.BaseUrl = $"http://127.0.0.1:{port}";
            o.ModelUnavailableTimeout = TimeSpan.FromSeconds(2);
            o.LoggerFactory = logs;
        });
        var agent = await h.AgentAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"));

        Assert.Equal("model_error", ex.Context["error_type"]);
        Assert.Contains("ModelUnavailableTimeout (2 s)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("refused", ex.Message, StringComparison.OrdinalIgnoreCase);
        Assert.NotEmpty(logs.WithEventId(2009));
    }

    [DatabaseFact]
    public async Task BatchCreationOverloaded_TheRunWaitsThenItsBatchIsCreated()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var failures = 0;
        h.Claude.FailRequests(r => IsBatchCreate(r) && Interlocked.Increment(ref failures) <= 2
            ? new FakeApiError(529, "overloaded_error", "Overloaded") { RetryAfter = s_sdkRetryAfter }
            : null);
        h.Claude.Respond(_ => FakeReply.Text("batched answer"));

        var response = await h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go");

        Assert.Equal("batched answer", response.Text);
        Assert.Equal(3, h.Claude.Requests.Count(IsBatchCreate));
        Assert.All(h.Claude.Requests.Where(IsBatchCreate), r => Assert.Equal(0, r.RetryCount));
        Assert.Single(await h.Client.GetIterationsAsync(response.RunId));
    }

    [DatabaseFact]
    public async Task BatchCreationOverloaded_WithTimeoutZero_FailsAfterTheSdkRetries()
    {
        await using var h = await Harness.StartAsync(db, o => o.ModelUnavailableTimeout = TimeSpan.Zero);
        var agent = await h.AgentAsync();
        h.Claude.FailRequests(r => IsBatchCreate(r) ? new FakeApiError(529, "overloaded_error", "Overloaded") { RetryAfter = s_sdkRetryAfter } : null);

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"));

        Assert.Equal("batch_error", ex.Context["error_type"]);
        Assert.Contains("Creating the message batch failed: Claude API error 529 overloaded_error: Overloaded", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, h.Claude.Requests.Count(IsBatchCreate));
    }

    [DatabaseFact]
    public async Task BatchResultsOverloadedMoreOftenThanMaxModelRetries_AreResubmittedUntilTheRunCompletes()
    {
        // A burst of overload failed a batch run after MaxModelRetries resubmissions, when a streamed run waited it out.
        await using var h = await Harness.StartAsync(db, o => o.MaxModelRetries = 1);
        var agent = await h.AgentAsync();
        var overloaded = FakeReply.Error(529, "overloaded_error", "Overloaded");
        h.Claude.Enqueue(overloaded, overloaded, overloaded, FakeReply.Error(429, "rate_limit_error", "rate limited"), FakeReply.Text("batched after the burst"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the batch run to complete", TimeSpan.FromSeconds(60));

        Assert.Equal("batched after the burst", response.Text);
        Assert.Equal(5, h.Claude.Requests.Count(IsBatchCreate));
        Assert.Single(await h.Client.GetIterationsAsync(response.RunId));
    }

    [DatabaseFact]
    public async Task BatchResultsOverloaded_AreResubmittedAfterTheStreamingBackoffNotAtEveryPoll()
    {
        // Before, an overloaded result was resubmitted at the next poll (200 ms here, BatchPollInterval): a burst of
        // overload got a new batch every poll interval, however long it lasted. Now each resubmission waits the backoff a
        // streamed call waits (1 s doubling, jittered to 50–100 %), announced as for a stream.
        var logs = new LogCapture();
        await using var h = await Harness.StartAsync(db, o => o.LoggerFactory = logs);
        var agent = await h.AgentAsync();
        var overloaded = FakeReply.Error(529, "overloaded_error", "Overloaded");
        h.Claude.Enqueue(overloaded, overloaded, overloaded, FakeReply.Text("batched after the backoff"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the batch run to complete", TimeSpan.FromSeconds(60));

        Assert.Equal("batched after the backoff", response.Text);
        var creations = h.Claude.Requests.Where(IsBatchCreate).Select(r => r.ReceivedAt).ToList();
        Assert.Equal(4, creations.Count);
        for (var i = 1; i < creations.Count; i++)
        {
            // The i-th wait is at least half of 1 s × 2^(i-1).
            var least = TimeSpan.FromMilliseconds(500 << (i - 1));
            Assert.True(creations[i] - creations[i - 1] >= least,
                $"resubmission {i} came {(creations[i] - creations[i - 1]).TotalMilliseconds} ms after the batch before it, not after a backoff of at least {least.TotalMilliseconds} ms");
        }

        var waits = logs.WithEventId(2009);
        Assert.Equal(3, waits.Count);
        Assert.All(waits, w => Assert.Contains("overloaded_error: Overloaded", w.Message, StringComparison.Ordinal));
        Assert.Single(await h.Client.GetIterationsAsync(response.RunId));
    }

    [DatabaseFact]
    public async Task BatchResultsOverloadedThenCanceled_TheCanceledResultIsResubmittedToo()
    {
        // Overload resubmissions were counted with canceled and missing results against MaxModelRetries: after a burst of
        // overload, one canceled result failed the run ("also after 2 resubmissions").
        await using var h = await Harness.StartAsync(db, o => o.MaxModelRetries = 1);
        var agent = await h.AgentAsync();
        var overloaded = FakeReply.Error(529, "overloaded_error", "Overloaded");
        h.Claude.Enqueue(overloaded, overloaded, FakeReply.Canceled(), FakeReply.Text("batched after the cancel"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the batch run to complete", TimeSpan.FromSeconds(60));

        Assert.Equal("batched after the cancel", response.Text);
        Assert.Equal(4, h.Claude.Requests.Count(IsBatchCreate));
    }

    [DatabaseFact]
    public async Task BatchResultsOverloadedThenCanceledTwice_FailsOnTheCanceledLimitAlone()
    {
        // The canceled/missing limit still holds, counted apart from the overloads.
        await using var h = await Harness.StartAsync(db, o => o.MaxModelRetries = 1);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Error(529, "overloaded_error", "Overloaded"), FakeReply.Canceled(), FakeReply.Canceled(), FakeReply.Text("never"));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () =>
            await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the batch run to fail", TimeSpan.FromSeconds(60)));

        Assert.Equal("batch_error", ex.Context["error_type"]);
        Assert.Contains("was canceled at the API", ex.Message, StringComparison.Ordinal);
        Assert.Contains("also after 1 resubmissions", ex.Message, StringComparison.Ordinal);
        Assert.Equal(3, h.Claude.Requests.Count(IsBatchCreate));
    }

    [DatabaseFact]
    public async Task BatchResultsOverloadedLongerThanTheTimeout_FailTheRunSayingForHowLong()
    {
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.MaxModelRetries = 1;
            o.ModelUnavailableTimeout = TimeSpan.FromSeconds(1);
        });
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Error(529, "overloaded_error", "Overloaded"));

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () =>
            await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the batch run to fail", TimeSpan.FromSeconds(60)));

        Assert.Equal("batch_error", ex.Context["error_type"]);
        Assert.Contains("Claude's batch request failed: overloaded_error: Overloaded (errored for ", ex.Message, StringComparison.Ordinal);
        Assert.Contains("Claude stayed unavailable for longer than AgentPgOptions.ModelUnavailableTimeout (1 s)", ex.Message, StringComparison.Ordinal);
        // Measured from the first errored result, with the backoff between resubmissions (the last one when the time is up):
        // more than MaxModelRetries' one resubmission is not needed to fail, but at least one was made.
        Assert.True(h.Claude.Requests.Count(IsBatchCreate) >= 2, $"{h.Claude.Requests.Count(IsBatchCreate)} batches created");
    }

    [DatabaseFact]
    public async Task TheSummaryOfARunsAutomaticCompaction_WaitsOutAnOverloadedClaude()
    {
        // Claude says the prompt is too long; the run compacts its session, and the summariser is overloaded for longer than
        // the SDK's retries. Before, the compaction failed and the run with it, as context_window_exceeded "even with
        // automatic compaction"; the summary now waits as the run's own calls do.
        var claudeOptions = new FakeClaudeServerOptions { ContextWindow = 2500 };
        await using var h = await Harness.StartAsync(db, claudeOptions, o =>
        {
            o.AutoCompaction = true;
            o.Compaction = new CompactionOptions { MaxTokensForModel = 1_000_000, TargetTokens = 500, ProtectedTokens = 200, PreserveLastN = 1 };
        });
        var summarizerCalls = 0;
        h.Claude.Respond(request =>
        {
            if (!request.SystemText.StartsWith("You summarise conversations", StringComparison.Ordinal))
            {
                return FakeReply.Text("noted");
            }

            return Interlocked.Increment(ref summarizerCalls) <= 3 ? Overloaded : FakeReply.Text("SUMMARY of the earlier turns");
        });
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();

        // Turns of about 500 tokens until the prompt is too long for the 2 500-token window and the session is compacted.
        for (var i = 0; Volatile.Read(ref summarizerCalls) == 0; i++)
        {
            Assert.True(i < 20, "the session was never compacted");
            var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, $"turn {i}: " + new string('y', 2000)), $"run {i}",
                TimeSpan.FromSeconds(60));
            Assert.Equal("noted", response.Text);
        }

        var compaction = Assert.Single(await h.Client.GetCompactionEventsAsync(session));
        Assert.Equal("context_window", compaction.Reason);
        Assert.Equal(4, Volatile.Read(ref summarizerCalls));
    }

    [DatabaseFact]
    public async Task AWatcher_SeesEachWaitForClaude_AsAModelUnavailableEvent()
    {
        // Before, a watcher saw nothing for as long as the run waited (up to ModelUnavailableTimeout): only log 2009 told.
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(Overloaded, FakeReply.Error(429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit", s_sdkRetryAfter),
            FakeReply.Text("after the waits"));
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "hi");
        var events = new List<RunEvent>();
        await using var watch = h.Client.WatchRunAsync(runId).GetAsyncEnumerator();
        // The watch is registered once its first event (the back-filled creation) arrives: only then does the run start.
        Assert.True(await watch.MoveNextAsync());
        events.Add(watch.Current);
        await h.Client.StartAsync();

        await Eventually.WithinAsync(Task.Run(async () =>
        {
            while (await watch.MoveNextAsync())
            {
                events.Add(watch.Current);
            }
        }), "the watch to end with the run", TimeSpan.FromSeconds(60));

        var waits = events.OfType<ModelUnavailableEvent>().ToList();
        Assert.Equal(2, waits.Count);
        Assert.All(waits, w =>
        {
            Assert.Equal(runId, w.RunId);
            Assert.Equal(1, w.IterationNumber);
            Assert.True(w.Wait > TimeSpan.Zero && w.Wait <= TimeSpan.FromSeconds(2), $"wait {w.Wait}");
            Assert.Equal(w.Timestamp + w.Wait, w.RetryAt);
        });
        Assert.Equal("Claude API error 529 overloaded_error: Overloaded", waits[0].Error);
        Assert.StartsWith("Claude API error 429 rate_limit_error", waits[1].Error, StringComparison.Ordinal);
        // The second failure came after the first wait. Task.Delay's timer runs on the coarse monotonic clock (4 ms ticks on
        // Linux) while FailingFor is measured with the precise one, so the delay can end a few milliseconds before its length
        // has passed by the precise clock (CI saw 844 ms after a wait of 849 ms): compare within that clock's resolution.
        Assert.True(waits[1].FailingFor > waits[0].FailingFor, $"failing for {waits[1].FailingFor}, then {waits[0].FailingFor}");
        Assert.True(waits[1].FailingFor >= waits[0].Wait - TimeSpan.FromMilliseconds(20), $"failing for {waits[1].FailingFor} after a wait of {waits[0].Wait}");
        var answer = events.FindIndex(e => e is MessageStoredEvent { Message.Role: MessageRole.Assistant });
        Assert.True(answer > events.IndexOf(waits[1]), "the waits come before the answer");
        Assert.Equal(RunState.Completed, Assert.IsType<RunFinishedEvent>(events[^1]).State);
    }
}
