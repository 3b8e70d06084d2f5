using System.Collections.Concurrent;
using System.Diagnostics;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Diagnostics;

// Alone: AgentPg's meter and activity source are process-wide, and the metrics' tags (outcome, mode) name no run or schema,
// so a test class running beside this one would add its runs' measurements to what these tests count.
[Collection(nameof(TelemetryTests))]
public sealed class TelemetryTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly ActivitySource s_app = new("AgentPg.Tests.App");

    private static readonly ToolSchema s_citySchema = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["city"] = new() { Type = "string" } },
        Required = ["city"],
    };

    /// <summary>Collects every stopped activity of AgentPg and of the test's "application" source.</summary>
    private sealed class Spans : IDisposable
    {
        private readonly ActivityListener _listener;

        public Spans()
        {
            _listener = new ActivityListener
            {
                ShouldListenTo = s => s.Name is "AgentPg" or "AgentPg.Tests.App",
                Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
                ActivityStopped = a => Stopped.Add(a),
            };
            ActivitySource.AddActivityListener(_listener);
        }

        public ConcurrentBag<Activity> Stopped { get; } = [];

        public List<Activity> InTrace(ActivityTraceId traceId) => Stopped.Where(a => a.TraceId == traceId).ToList();

        public void Dispose() => _listener.Dispose();
    }

    private async Task<(Harness H, AgentDefinition Agent, string Model, string Tool)> SetUpAsync(bool captureContent)
    {
        var model = "claude-otel-" + Guid.NewGuid().ToString("N")[..8];
        var tool = "city_weather_" + Guid.NewGuid().ToString("N")[..6];
        var h = await Harness.StartAsync(db, o => o.Telemetry.CaptureContent = captureContent,
            tools: new TestTool(tool, (_, input, _) => Task.FromResult("sunny in " + input.GetProperty("city").GetString()), s_citySchema));
        var agent = await h.AgentAsync(a => a with { Model = model, Tools = [tool] });
        h.Claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.ToolUse(tool, new { city = "Oslo" }) with { Usage = new FakeUsage { InputTokens = 100, OutputTokens = 10, CacheReadInputTokens = 30, CacheCreationInputTokens = 5 } }
            : FakeReply.Text("It is sunny in Oslo.") with { Usage = new FakeUsage { InputTokens = 200, OutputTokens = 7 } });
        return (h, agent, model, tool);
    }

    [DatabaseFact]
    public async Task Run_CreatedInsideAnActivity_ItsSpansContinueTheTraceWithGenAiAttributesAndNoContent()
    {
        using var spans = new Spans();
        var (h, agent, model, tool) = await SetUpAsync(captureContent: false);
        await using var _ = h;
        var producer = await h.AddClientAsync(start: false);
        var session = await producer.NewSessionAsync();
        Guid runId;
        ActivityTraceId traceId;
        using (var request = s_app.StartActivity("POST /chat"))
        {
            traceId = request!.TraceId;
            runId = await producer.RunFastAsync(session, agent.Id, "Weather in Oslo?");
        }

        await Eventually.WithinAsync(producer.WaitForRunAsync(runId), "the run");
        // The tool's span ends after its result commits, so the run can go on and finish (and the waits above end) before it.
        await Eventually.TrueAsync(() => spans.InTrace(traceId) is var ended && ended.Count(a => a.OperationName == "invoke_agent") >= 2
            && ended.Any(a => a.DisplayName == "execute_tool " + tool), "both claims' invoke_agent spans and the tool's span to end");

        var trace = spans.InTrace(traceId);
        var invokes = trace.Where(a => a.OperationName == "invoke_agent").ToList();
        Assert.All(invokes, a =>
        {
            Assert.Equal("invoke_agent " + agent.Name, a.DisplayName);
            Assert.Equal("invoke_agent", a.GetTagItem("gen_ai.operation.name"));
            Assert.Equal("anthropic", a.GetTagItem("gen_ai.provider.name"));
            Assert.Equal(agent.Id.ToString(), a.GetTagItem("gen_ai.agent.id"));
            Assert.Equal(agent.Name, a.GetTagItem("gen_ai.agent.name"));
            Assert.Equal(session.ToString(), a.GetTagItem("gen_ai.conversation.id"));
            Assert.Equal(model, a.GetTagItem("gen_ai.request.model"));
        });

        var chats = trace.Where(a => a.DisplayName == "chat " + model).OrderBy(a => a.StartTimeUtc).ToList();
        Assert.Equal(2, chats.Count);
        Assert.All(chats, c => Assert.Contains(invokes, i => i.SpanId == c.ParentSpanId));
        Assert.Equal(ActivityKind.Client, chats[0].Kind);
        Assert.Equal("chat", chats[0].GetTagItem("gen_ai.operation.name"));
        Assert.Equal(model, chats[0].GetTagItem("gen_ai.request.model"));
        Assert.NotNull(chats[0].GetTagItem("gen_ai.response.model"));
        Assert.StartsWith("msg_", (string)chats[0].GetTagItem("gen_ai.response.id")!, StringComparison.Ordinal);
        Assert.Equal(["tool_use"], (string[])chats[0].GetTagItem("gen_ai.response.finish_reasons")!);
        Assert.Equal(135L, chats[0].GetTagItem("gen_ai.usage.input_tokens"));
        Assert.Equal(10L, chats[0].GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Equal(["end_turn"], (string[])chats[1].GetTagItem("gen_ai.response.finish_reasons")!);

        var toolSpan = Assert.Single(trace, a => a.DisplayName == "execute_tool " + tool);
        Assert.Equal("execute_tool", toolSpan.GetTagItem("gen_ai.operation.name"));
        Assert.Equal(tool, toolSpan.GetTagItem("gen_ai.tool.name"));
        Assert.StartsWith("toolu_", (string)toolSpan.GetTagItem("gen_ai.tool.call.id")!, StringComparison.Ordinal);

        // Content is opt-in.
        Assert.All(trace, a => Assert.DoesNotContain(a.TagObjects, t => t.Key is "gen_ai.input.messages" or "gen_ai.output.messages"
            or "gen_ai.tool.call.arguments" or "gen_ai.tool.call.result"));
    }

    [DatabaseFact]
    public async Task Run_WithCaptureContent_SpansCarryMessagesAndToolArguments()
    {
        using var spans = new Spans();
        var (h, agent, model, tool) = await SetUpAsync(captureContent: true);
        await using var _ = h;
        var session = await h.Client.NewSessionAsync();
        ActivityTraceId traceId;
        Guid runId;
        using (var request = s_app.StartActivity("POST /chat"))
        {
            traceId = request!.TraceId;
            runId = await h.Client.RunFastAsync(session, agent.Id, "Weather in Oslo?");
        }

        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run");
        // The tool's span ends after its result commits, so the run can go on and finish (and the wait above end) before it.
        await Eventually.TrueAsync(() => spans.InTrace(traceId) is var ended && ended.Count(a => a.DisplayName == "chat " + model) == 2
            && ended.Any(a => a.DisplayName == "execute_tool " + tool), "both chat spans and the tool's span to end");

        var trace = spans.InTrace(traceId);
        var chats = trace.Where(a => a.DisplayName == "chat " + model).OrderBy(a => a.StartTimeUtc).ToList();
        Assert.Contains("Weather in Oslo?", (string)chats[0].GetTagItem("gen_ai.input.messages")!, StringComparison.Ordinal);
        Assert.Contains("It is sunny in Oslo.", (string)chats[1].GetTagItem("gen_ai.output.messages")!, StringComparison.Ordinal);
        var toolSpan = Assert.Single(trace, a => a.DisplayName == "execute_tool " + tool);
        Assert.Contains("Oslo", (string)toolSpan.GetTagItem("gen_ai.tool.call.arguments")!, StringComparison.Ordinal);
        Assert.Equal("sunny in Oslo", toolSpan.GetTagItem("gen_ai.tool.call.result"));
    }

    [DatabaseFact]
    public async Task Run_RecordsTheMetricsOfDesign13_9()
    {
        using var metrics = new Measurements();
        var (h, agent, model, tool) = await SetUpAsync(captureContent: false);
        await using var _ = h;
        var session = await h.Client.NewSessionAsync();

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "Weather in Oslo?"), "the run");

        // A tool's and a run's outcome are counted after their commit: the run may go on past the first, and its wait end
        // before the second.
        await Eventually.TrueAsync(() => metrics.Of("agentpg.tool.executions").Any(m => Equals(m.Tags["gen_ai.tool.name"], tool))
            && metrics.Of("agentpg.runs").Any(m => Equals(m.Tags["agentpg.run.outcome"], "completed")), "the tool's and the run's outcome to be counted");
        // Counted once: no other run is measured while this class runs alone.
        Assert.Single(metrics.Of("agentpg.runs"));
        var tokens = metrics.Of("gen_ai.client.token.usage").Where(m => Equals(m.Tags["gen_ai.request.model"], model)).ToList();
        Assert.Equal(135 + 200, tokens.Where(m => Equals(m.Tags["gen_ai.token.type"], "input")).Sum(m => m.Value));
        Assert.Equal(17, tokens.Where(m => Equals(m.Tags["gen_ai.token.type"], "output")).Sum(m => m.Value));
        Assert.All(tokens, m => Assert.Equal("anthropic", m.Tags["gen_ai.provider.name"]));
        Assert.Equal(2, metrics.Of("gen_ai.client.operation.duration").Count(m => Equals(m.Tags["gen_ai.request.model"], model) && m.Value >= 0));
        Assert.Contains(metrics.Of("agentpg.runs"), m => Equals(m.Tags["agentpg.run.outcome"], "completed") && Equals(m.Tags["agentpg.run.mode"], "streaming"));
        Assert.Single(metrics.Of("agentpg.tool.executions"), m => Equals(m.Tags["gen_ai.tool.name"], tool) && Equals(m.Tags["agentpg.tool.outcome"], "success"));
        // The run's first claim only (its continuation after the tool is claimed again, but not queued anew).
        Assert.Single(metrics.Of("agentpg.run.queue_duration"), m => Equals(m.Tags["agentpg.run.mode"], "streaming") && m.Value >= 0);

        // The observable gauge reports the started client's schema (refreshed in the background, so observe until it is read).
        await Eventually.TrueAsync(() =>
        {
            metrics.Observe();
            return metrics.Of("agentpg.runs.pending").Any(m => Equals(m.Tags["agentpg.schema"], db.Schema) && m.Value == 0);
        }, "agentpg.runs.pending to report the schema's pending runs");
    }

    [DatabaseFact]
    public async Task RunsPending_TwoInstancesOnOneSchema_OnlyTheLeaderReportsTheSchemasCount()
    {
        // Every started client reported the schema-wide count: a dashboard that sums the gauge over instances (what a backend
        // does with a gauge's series) showed the queue twice over with two instances.
        using var metrics = new Measurements();
        await using var h = await Harness.StartAsync(db);
        var second = await h.AddClientAsync();
        // Runs of an agent whose tool no instance has stay pending.
        var agent = await h.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "unclaimable_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5", Tools = ["no_instance_has_this_tool"],
        });
        var runs = new List<Guid>();
        for (var i = 0; i < 3; i++)
        {
            runs.Add(await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "wait"));
        }

        try
        {
            await Eventually.TrueAsync(() => h.Client.IsLeader || second.IsLeader, "one of the two instances to lead the schema");
            var leader = h.Client.IsLeader ? h.Client : second;
            // Both read the count now (else each reads it in the background at its first observation).
            await h.Client.PendingRunsProbe!.RefreshAsync();
            await second.PendingRunsProbe!.RefreshAsync();

            metrics.Observe();

            var pending = metrics.Of("agentpg.runs.pending").Where(m => Equals(m.Tags["agentpg.schema"], db.Schema)).ToList();
            var reported = Assert.Single(pending);
            Assert.Equal(3, reported.Value);
            Assert.Equal(leader.InstanceId, reported.Tags["agentpg.instance.id"]);
        }
        finally
        {
            foreach (var run in runs)
            {
                await h.Client.CancelRunAsync(run);
            }
        }
    }

    [DatabaseFact]
    public async Task BatchRun_EachResultAppliedHasASpanInTheRunsTrace_TheLastWithTheRunsOutcome()
    {
        // A batch run's trace ended with the submission of its first batch: the results, the tool round between them and
        // the run's outcome were in no span.
        using var spans = new Spans();
        var (h, agent, model, tool) = await SetUpAsync(captureContent: false);
        await using var _ = h;
        var session = await h.Client.NewSessionAsync();
        ActivityTraceId traceId;
        Guid runId;
        using (var request = s_app.StartActivity("POST /jobs"))
        {
            traceId = request!.TraceId;
            runId = await h.Client.RunAsync(session, agent.Id, "Weather in Oslo?");
        }

        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the batch run");
        Activity? Outcome() => spans.InTrace(traceId).SingleOrDefault(a => Equals(a.GetTagItem("agentpg.run.outcome"), "completed"));
        await Eventually.TrueAsync(() => Outcome() is not null, "the span of the result that completed the run to end");

        var results = spans.InTrace(traceId).Where(a => a.GetTagItem("agentpg.batch.id") is not null).OrderBy(a => a.StartTimeUtc).ToList();
        var iterations = await h.Client.GetIterationsAsync(runId);
        // One per result applied (the tool round's, the answer's), each naming its batch, in the run's trace.
        Assert.Equal(iterations.Select(i => i.BatchId), results.Select(a => (string?)a.GetTagItem("agentpg.batch.id")));
        Assert.All(results, a =>
        {
            Assert.Equal("invoke_agent " + agent.Name, a.DisplayName);
            Assert.Equal("batch", a.GetTagItem("agentpg.run.mode"));
            Assert.Equal(runId.ToString(), a.GetTagItem("agentpg.run.id"));
            Assert.Equal("succeeded", a.GetTagItem("agentpg.batch.result"));
            Assert.Equal(model, a.GetTagItem("gen_ai.request.model"));
            Assert.StartsWith("msg_", (string)a.GetTagItem("gen_ai.response.id")!, StringComparison.Ordinal);
        });
        Assert.Equal(["tool_use"], (string[])results[0].GetTagItem("gen_ai.response.finish_reasons")!);
        Assert.Equal(135L, results[0].GetTagItem("gen_ai.usage.input_tokens"));
        Assert.Null(results[0].GetTagItem("agentpg.run.outcome"));
        Assert.Same(Outcome(), results[^1]);
        Assert.Equal(["end_turn"], (string[])results[^1].GetTagItem("gen_ai.response.finish_reasons")!);
        Assert.Equal(7L, results[^1].GetTagItem("gen_ai.usage.output_tokens"));
        Assert.Contains(spans.InTrace(traceId), a => a.DisplayName == "execute_tool " + tool);
    }

    [DatabaseFact]
    public async Task BatchRun_ARefusedResult_FailsTheRunInASpanWithTheError()
    {
        using var spans = new Spans();
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Error(400, "invalid_request_error", "messages.0: bad content"));
        ActivityTraceId traceId;
        Guid runId;
        using (var request = s_app.StartActivity("POST /jobs"))
        {
            traceId = request!.TraceId;
            runId = await h.Client.RunAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        }

        await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the batch run"));
        Activity? Failed() => spans.InTrace(traceId).SingleOrDefault(a => Equals(a.GetTagItem("agentpg.run.outcome"), "failed"));
        await Eventually.TrueAsync(() => Failed() is not null, "the span of the result that failed the run to end");

        var span = Failed()!;
        Assert.Equal("errored", span.GetTagItem("agentpg.batch.result"));
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.Equal("batch_error", span.GetTagItem("error.type"));
        Assert.Contains("invalid_request_error: messages.0: bad content", span.StatusDescription, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task BatchRun_ItsTokensAreMeasuredLikeAStreamingRunsTaggedWithTheMode()
    {
        // Batch results have no chat span (docs/observability.md), but their tokens are charged (at half price): the token
        // usage histogram counts them, tagged with the run mode so that a cost can be derived from it.
        using var metrics = new Measurements();
        var (h, agent, model, _) = await SetUpAsync(captureContent: false);
        await using var _ = h;

        await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "Weather in Oslo?"), "the batch run");
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "Weather in Oslo?"), "the streaming run");

        var tokens = metrics.Of("gen_ai.client.token.usage").Where(m => Equals(m.Tags["gen_ai.request.model"], model)).ToList();
        double Sum(string mode, string type) => tokens.Where(m => Equals(m.Tags.GetValueOrDefault("agentpg.run.mode"), mode)
                                                                  && Equals(m.Tags["gen_ai.token.type"], type)).Sum(m => m.Value);
        foreach (var mode in new[] { "batch", "streaming" })
        {
            Assert.Equal(135 + 200, Sum(mode, "input"));
            Assert.Equal(17, Sum(mode, "output"));
        }

        Assert.All(tokens, m =>
        {
            Assert.Equal("anthropic", m.Tags["gen_ai.provider.name"]);
            Assert.Equal("chat", m.Tags["gen_ai.operation.name"]);
            Assert.Equal(model, m.Tags["gen_ai.response.model"]);
        });
        // No operation duration for a batch request (it measures hours of queueing, not a call): the two streamed calls only.
        Assert.Equal(2, metrics.Of("gen_ai.client.operation.duration").Count(m => Equals(m.Tags["gen_ai.request.model"], model)));
    }

    [DatabaseFact]
    public async Task CompactionSummariser_ItsTokensAreMeasuredAsTheCompactionEventRecordsThem()
    {
        using var metrics = new Measurements();
        var summarizer = "claude-summary-" + Guid.NewGuid().ToString("N")[..8];
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(r => r.SystemText.StartsWith("You summarise conversations", StringComparison.Ordinal)
            ? FakeReply.Text("SUMMARY of the earlier turns") with { Usage = new FakeUsage { InputTokens = 900, OutputTokens = 60, CacheCreationInputTokens = 0, CacheReadInputTokens = 0 } }
            : FakeReply.Text("answer to " + r.LastUserText[..12]));
        var session = await h.Client.NewSessionAsync();
        for (var i = 0; i < 5; i++)
        {
            await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, $"question {i} " + new string('x', 400)), $"turn {i}");
        }

        var result = await h.Client.CompactAsync(session, new CompactionOptions
        {
            Strategy = CompactionStrategy.Summarization, ProtectedTokens = 50, PreserveLastN = 2, TargetTokens = 100, SummarizerModel = summarizer,
        });

        Assert.True(result.SummaryCreated);
        Assert.Equal(new Usage { InputTokens = 900, OutputTokens = 60 }, result.Usage);
        var tokens = metrics.Of("gen_ai.client.token.usage").Where(m => Equals(m.Tags["gen_ai.request.model"], summarizer)).ToList();
        Assert.Equal(900, tokens.Where(m => Equals(m.Tags["gen_ai.token.type"], "input")).Sum(m => m.Value));
        Assert.Equal(60, tokens.Where(m => Equals(m.Tags["gen_ai.token.type"], "output")).Sum(m => m.Value));
        Assert.All(tokens, m => Assert.Equal("streaming", m.Tags["agentpg.run.mode"]));
    }

    [DatabaseFact]
    public async Task ModelCall_RefusedAsPromptTooLong_ItsChatSpanIsAnErrorAndItsDurationIsRecorded()
    {
        using var spans = new Spans();
        var model = "claude-otel-" + Guid.NewGuid().ToString("N")[..8];
        using var metrics = new Measurements();
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { ContextWindow = 30 });
        var agent = await h.AgentAsync(a => a with { Model = model });
        var session = await h.Client.NewSessionAsync();
        Guid runId;
        ActivityTraceId traceId;
        using (var request = s_app.StartActivity("POST /chat"))
        {
            traceId = request!.TraceId;
            runId = await h.Client.RunFastAsync(session, agent.Id, new string('x', 400));
        }

        await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run"));
        await Eventually.TrueAsync(() => spans.InTrace(traceId).Any(a => a.OperationName == "invoke_agent" && a.Status == ActivityStatusCode.Error),
            "the failed run's invoke_agent span to end");

        // Claude refused every model call of the run (400, prompt is too long).
        var chats = spans.InTrace(traceId).Where(a => a.DisplayName == "chat " + model).ToList();
        Assert.NotEmpty(chats);
        Assert.All(chats, c =>
        {
            Assert.Equal(ActivityStatusCode.Error, c.Status);
            Assert.NotNull(c.GetTagItem("error.type"));
        });
        var durations = metrics.Of("gen_ai.client.operation.duration").Where(m => Equals(m.Tags["gen_ai.request.model"], model)).ToList();
        Assert.Equal(chats.Count, durations.Count);
        Assert.All(durations, m => Assert.NotNull(m.Tags.GetValueOrDefault("error.type")));
    }

    [DatabaseFact]
    public async Task ToolAttempt_FailedAndRetried_ItsSpanIsAnErrorAndTheAttemptIsCounted()
    {
        using var spans = new Spans();
        var tool = "flaky_" + Guid.NewGuid().ToString("N")[..6];
        using var metrics = new Measurements();
        List<string> Outcomes() => metrics.Of("agentpg.tool.executions").Where(m => Equals(m.Tags["gen_ai.tool.name"], tool))
            .Select(m => (string)m.Tags["agentpg.tool.outcome"]!).ToList();
        // The first attempt throws; the retry (ToolRetry: 2 attempts, at once) succeeds.
        var attempts = 0;
        await using var h = await Harness.StartAsync(db, tools: new TestTool(tool, (_, _, _) => Interlocked.Increment(ref attempts) == 1
            ? Task.FromException<string>(new InvalidOperationException("the service timed out"))
            : Task.FromResult("done")));
        var agent = await h.AgentAsync(a => a with { Tools = [tool] });
        h.Claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse(tool, new { }) : FakeReply.Text("finished"));
        var session = await h.Client.NewSessionAsync();

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "go"), "the run");
        // A span ends, and an outcome is counted, after the attempt's write commits: the run can finish before.
        await Eventually.TrueAsync(() => spans.Stopped.Count(a => a.DisplayName == "execute_tool " + tool) == 2 && Outcomes().Count == 2,
            "both attempts' spans to end and both attempts to be counted");

        Assert.Equal(2, attempts);
        var attemptSpans = spans.Stopped.Where(a => a.DisplayName == "execute_tool " + tool).OrderBy(a => a.StartTimeUtc).ToList();
        Assert.Equal(ActivityStatusCode.Error, attemptSpans[0].Status);
        Assert.Contains("the service timed out", attemptSpans[0].StatusDescription, StringComparison.Ordinal);
        Assert.NotNull(attemptSpans[0].GetTagItem("error.type"));
        Assert.Equal(ActivityStatusCode.Unset, attemptSpans[1].Status);
        Assert.Equal(["error", "success"], Outcomes().Order());
    }

    [DatabaseFact]
    public async Task InvokeAgentSpan_CarriesTheRunsOutcome_ACancellationIsNoError()
    {
        // Before, a run cancelled while its instance processed it ended its invoke_agent span with status Unset and nothing
        // else: a trace could not tell it from a run that went on to wait for its tools, or from a shutdown.
        using var spans = new Spans();
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var held = new TaskCompletionSource();
        h.Claude.Respond(async (request, ct) =>
        {
            if (request.LastUserText == "hold")
            {
                held.TrySetResult();
                await new TaskCompletionSource().Task.WaitAsync(ct);
            }

            return FakeReply.Text("done");
        });
        var session = await h.Client.NewSessionAsync();
        var cancelledId = await h.Client.RunFastAsync(session, agent.Id, "hold");
        await Eventually.WithinAsync(held.Task, "the cancelled run's model call");
        await h.Client.CancelRunAsync(cancelledId);
        var completedId = await h.Client.RunFastAsync(session, agent.Id, "answer");
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(completedId), "the next run");

        Activity? Span(Guid runId) => spans.Stopped.SingleOrDefault(a => a.OperationName == "invoke_agent" && Equals(a.GetTagItem("agentpg.run.id"), runId.ToString()));
        await Eventually.TrueAsync(() => Span(cancelledId) is not null && Span(completedId) is not null, "both runs' invoke_agent spans to end");

        Assert.Equal("cancelled", Span(cancelledId)!.GetTagItem("agentpg.run.outcome"));
        Assert.Equal(ActivityStatusCode.Unset, Span(cancelledId)!.Status);
        Assert.Equal("completed", Span(completedId)!.GetTagItem("agentpg.run.outcome"));
        Assert.Equal(ActivityStatusCode.Unset, Span(completedId)!.Status);
    }

    [DatabaseFact]
    public async Task CancelledRuns_AreCountedWithTheirMode_TheirChildRunsAndInterruptedRunsToo()
    {
        using var metrics = new Measurements();
        List<(string Instrument, double Value, Dictionary<string, object?> Tags)> Outcome(string outcome)
            => metrics.Of("agentpg.runs").Where(m => Equals(m.Tags["agentpg.run.outcome"], outcome)).ToList();
        // Two trees of a run and the child run it delegated to, the child's tool call waiting for approval (nothing in flight).
        var tool = "send_" + Guid.NewGuid().ToString("N")[..6];
        string parent = "parent_" + Guid.NewGuid().ToString("N")[..6], child = "child_" + Guid.NewGuid().ToString("N")[..6];
        await using var h = await Harness.StartAsync(db, tools: new TestTool(tool));
        var childAgent = await h.AgentAsync(a => a with { Name = child, SystemPrompt = child, Tools = [tool], ToolsRequiringApproval = [tool] });
        var parentAgent = await h.AgentAsync(a => a with { Name = parent, SystemPrompt = parent, Tools = [], AgentIds = [childAgent.Id] });
        h.Claude.Respond(r => r.LastUserText == "never mind" ? FakeReply.Text("ok")
            : r.SystemText == parent ? FakeReply.ToolUse(child, new { task = "send it" })
            : FakeReply.ToolUse(tool, new { }));
        async Task<Guid> TreeAsync(Guid session)
        {
            var rootId = await h.Client.RunFastAsync(session, parentAgent.Id, "delegate");
            await Eventually.TrueAsync(async () => (await h.Client.GetPendingApprovalsAsync(session)).Count == 1, "the child run's call to wait");
            return rootId;
        }

        Guid cancelledSession = await h.Client.NewSessionAsync(), interruptedSession = await h.Client.NewSessionAsync();
        var cancelledRoot = await TreeAsync(cancelledSession);
        await TreeAsync(interruptedSession);

        await h.Client.CancelRunAsync(cancelledRoot);
        var next = await h.Client.RunFastAsync(interruptedSession, parentAgent.Id, "never mind", new RunOptions { ConcurrencyPolicy = ConcurrencyPolicy.Interrupt });
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(next), "the interrupting run");
        // Its outcome is counted after its commit, maybe after the wait ended.
        await Eventually.TrueAsync(() => Outcome("completed").Count > 0, "the interrupting run's outcome to be counted");

        Assert.Equal(2L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1 AND state = 'cancelled'", cancelledSession));
        Assert.Equal(2L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1 AND state = 'cancelled'", interruptedSession));
        var cancelled = Outcome("cancelled");
        Assert.Equal(4, cancelled.Sum(m => m.Value));
        Assert.All(cancelled, m => Assert.Equal("streaming", m.Tags.GetValueOrDefault("agentpg.run.mode")));
    }

    [DatabaseFact]
    public async Task Client_StartedInsideAnActivity_ItsWorkDoesNotJoinThatTrace()
    {
        // A client started inside a span (a startup span, a request that starts it lazily, a test) must not make that span the
        // parent of everything its background loops do: a run created outside any span starts a trace of its own.
        using var spans = new Spans();
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        h.Claude.Respond(_ => FakeReply.Text("done"));
        ActivityTraceId startupTrace;
        using (var startup = s_app.StartActivity("startup"))
        {
            startupTrace = startup!.TraceId;
            await h.Client.StartAsync();
        }

        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the run");
        Activity? Invoke() => spans.Stopped.SingleOrDefault(a => a.OperationName == "invoke_agent" && Equals(a.GetTagItem("agentpg.run.id"), runId.ToString()));
        await Eventually.TrueAsync(() => Invoke() is not null, "the run's invoke_agent span to end");

        Assert.NotEqual(startupTrace, Invoke()!.TraceId);
        Assert.Equal(default, Invoke()!.ParentSpanId);
    }

    [DatabaseFact]
    public async Task ChildRun_ItsSpansAreUnderTheDelegatingExecuteToolSpan()
    {
        using var spans = new Spans();
        await using var h = await Harness.StartAsync(db);
        string parent = "parent_" + Guid.NewGuid().ToString("N")[..6], child = "child_" + Guid.NewGuid().ToString("N")[..6];
        var childAgent = await h.AgentAsync(a => a with { Name = child, SystemPrompt = child });
        var parentAgent = await h.AgentAsync(a => a with { Name = parent, SystemPrompt = parent, AgentIds = [childAgent.Id] });
        h.Claude.Respond(r => r.SystemText == parent
            ? (r.ToolResults.Count == 0 ? FakeReply.ToolUse(child, new { task = "part" }) : FakeReply.Text("all done"))
            : FakeReply.Text("part done"));
        ActivityTraceId traceId;
        Guid runId;
        using (var request = s_app.StartActivity("POST /delegate"))
        {
            traceId = request!.TraceId;
            runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), parentAgent.Id, "delegate");
        }

        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the parent run");
        await Eventually.TrueAsync(() => spans.InTrace(traceId) is var ended && ended.Any(a => a.DisplayName == "execute_tool " + child)
            && ended.Any(a => a.DisplayName == "invoke_agent " + child), "the delegation's and the child run's spans to end");

        var trace = spans.InTrace(traceId);
        var delegation = Assert.Single(trace, a => a.DisplayName == "execute_tool " + child);
        Assert.Equal("agent", delegation.GetTagItem("gen_ai.tool.type"));
        var childInvoke = Assert.Single(trace, a => a.DisplayName == "invoke_agent " + child);
        Assert.Equal(delegation.SpanId, childInvoke.ParentSpanId);
    }

    [DatabaseFact]
    public async Task RunFailedByTheRescue_IsCountedAsFailed()
    {
        using var metrics = new Measurements();
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.LeaderTtl = TimeSpan.FromMilliseconds(600);
            o.InstanceTtl = TimeSpan.FromSeconds(2);
            o.HeartbeatInterval = TimeSpan.FromMilliseconds(200);
            o.RunRescue.Interval = TimeSpan.FromMilliseconds(200);
            o.RunRescue.MaxAttempts = 1;
        }, start: false);
        var agent = await h.AgentAsync();
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "go");
        await db.Seed.DeadInstanceAsync("ghost-otel");
        await db.Seed.ClaimRunAsync(run, "ghost-otel", TimeSpan.FromHours(1), rescueAttempts: 1);

        await h.Client.StartAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run to fail"));
        Assert.Equal("rescue_failed", ex.Context["error_type"]);
        await Eventually.TrueAsync(() => metrics.Of("agentpg.runs").Any(m => Equals(m.Tags["agentpg.run.outcome"], "failed")),
            "the run failed by the rescue to be counted", TimeSpan.FromSeconds(5));
        var failed = Assert.Single(metrics.Of("agentpg.runs"));
        Assert.Equal(1, failed.Value);
        Assert.Equal("streaming", failed.Tags["agentpg.run.mode"]);
    }

    [DatabaseFact]
    public async Task ModelCall_RetriedAfterAFailedAttempt_EachAttemptHasItsChatSpanAndDuration()
    {
        // Before, one chat span and one duration covered every attempt and the waits between them (up to
        // ModelUnavailableTimeout, 5 min by default) and ended successful: an outage that runs waited out showed no failed call.
        using var spans = new Spans();
        using var metrics = new Measurements();
        var model = "claude-otel-" + Guid.NewGuid().ToString("N")[..8];
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Model = model });
        h.Claude.Enqueue(FakeReply.Text("cut") with { StreamFault = FakeStreamFault.Error(1, "overloaded_error", "Overloaded") },
            FakeReply.Text("recovered"));

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"), "the run");
        Assert.Equal("recovered", response.Text);
        await Eventually.TrueAsync(() => spans.Stopped.Count(a => a.DisplayName == "chat " + model) == 2, "both attempts' chat spans to end");

        var chats = spans.Stopped.Where(a => a.DisplayName == "chat " + model).OrderBy(a => a.StartTimeUtc).ToList();
        Assert.Equal(ActivityStatusCode.Error, chats[0].Status);
        Assert.NotNull(chats[0].GetTagItem("error.type"));
        Assert.Null(chats[0].GetTagItem("gen_ai.response.id"));
        Assert.Equal(ActivityStatusCode.Unset, chats[1].Status);
        Assert.Equal(["end_turn"], (string[])chats[1].GetTagItem("gen_ai.response.finish_reasons")!);
        // The first attempt's span ended before the wait, so before the second attempt began.
        Assert.True(chats[0].StartTimeUtc + chats[0].Duration <= chats[1].StartTimeUtc, "the first attempt's span covers the wait after it");
        var durations = metrics.Of("gen_ai.client.operation.duration").Where(m => Equals(m.Tags["gen_ai.request.model"], model)).ToList();
        Assert.Equal(2, durations.Count);
        Assert.Single(durations, m => m.Tags.ContainsKey("error.type"));
    }

    [DatabaseFact]
    public async Task ToolErrorResult_ItsTextIsContent_NotOnTheSpanWithoutCaptureContent()
    {
        // Before, the error result a tool returned (sent to Claude as the tool's output) was the execute_tool span's status
        // description, exported although CaptureContent was false.
        using var spans = new Spans();
        var tool = "lookup_" + Guid.NewGuid().ToString("N")[..6];
        await using var h = await Harness.StartAsync(db, tools: new ErrorResultTool(tool, "no account for Ada Lovelace, 12 Baker Street"));
        var agent = await h.AgentAsync(a => a with { Tools = [tool] });
        h.Claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse(tool, new { }) : FakeReply.Text("sorry"));

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "find Ada"), "the run");
        await Eventually.TrueAsync(() => spans.Stopped.Any(a => a.DisplayName == "execute_tool " + tool), "the tool's span to end");

        var span = Assert.Single(spans.Stopped, a => a.DisplayName == "execute_tool " + tool);
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.Equal("tool_error", span.GetTagItem("error.type"));
        Assert.DoesNotContain("Ada", span.StatusDescription ?? "", StringComparison.Ordinal);
        Assert.All(span.TagObjects, t => Assert.DoesNotContain("Ada", Convert.ToString(t.Value, System.Globalization.CultureInfo.InvariantCulture) ?? "", StringComparison.Ordinal));
    }

    private sealed class ErrorResultTool(string name, string error) : IContentTool
    {
        public string Name => name;

        public string Description => "Returns an error result.";

        public ToolSchema InputSchema => new();

        public Task<ToolResult> ExecuteContentAsync(ToolContext context, System.Text.Json.JsonElement input, CancellationToken cancellationToken)
            => Task.FromResult(ToolResult.Error(error));
    }

    [DatabaseFact]
    public async Task ModelCall_CutMidStream_ThePartialAnswersTokensAreMeasuredAsTheRunRecordsThem()
    {
        // A stream cut after message_start is paid for as far as it went, and the run's usage counts it; before, the token
        // usage histogram measured only completed answers, so it read less than the runs' own usage.
        using var metrics = new Measurements();
        var model = "claude-otel-" + Guid.NewGuid().ToString("N")[..8];
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Model = model });
        h.Claude.Enqueue(
            FakeReply.Text("cut") with
            {
                Usage = new FakeUsage { InputTokens = 100, CacheReadInputTokens = 20, OutputTokens = 1 },
                StreamFault = FakeStreamFault.Error(1, "overloaded_error", "Overloaded"),
            },
            FakeReply.Text("recovered") with { Usage = new FakeUsage { InputTokens = 200, OutputTokens = 7 } });

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"), "the run");

        var usage = (await h.Client.GetRunAsync(response.RunId)).Usage;
        Assert.True(usage.InputTokens > 200, "the run's usage counts the cut stream's input tokens");
        var tokens = metrics.Of("gen_ai.client.token.usage").Where(m => Equals(m.Tags["gen_ai.request.model"], model)).ToList();
        Assert.Equal(usage.InputTokens + usage.CacheReadInputTokens + usage.CacheCreationInputTokens,
            tokens.Where(m => Equals(m.Tags["gen_ai.token.type"], "input")).Sum(m => m.Value));
        Assert.Equal(usage.OutputTokens, tokens.Where(m => Equals(m.Tags["gen_ai.token.type"], "output")).Sum(m => m.Value));
    }
}

[CollectionDefinition(nameof(TelemetryTests), DisableParallelization = true)]
public sealed class TelemetryTestsRunAlone;
