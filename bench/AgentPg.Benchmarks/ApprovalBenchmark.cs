using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using AgentPg.Testing;

namespace AgentPg.Benchmarks;

/// <summary>Approval latency (docs/approvals.md): from <c>ApproveToolCallAsync</c> returning (its transaction committed) to the
/// model request of the run's continuation arriving at the fake Claude.</summary>
/// <remarks>
/// Each run asks for one tool that needs approval, then answers with text. The run is created, its request recorded
/// (<see cref="AgentPgHooks.OnApprovalRequested"/> says when), and only then approved, so the worker is idle and what is
/// measured is the path itself: the decision's NOTIFY or local wake, the tool claim, the tool (it returns at once), its
/// result continuing the run, the run claim, the iteration start and the request. Runs go one at a time, each in its own
/// session. Two deciders: the worker's own client (it wakes its tool worker directly), and a never-started client, as a
/// back office in another process would be (the worker learns of the decision from the agentpg_tool_pending NOTIFY).
/// </remarks>
internal static class ApprovalBenchmark
{
    private const string Marker = "[approval:";
    private const string ToolName = "bench_approved_tool";

    public static async Task<ApprovalResult> RunAsync(BenchEnvironment env, BenchOptions options, bool viaNotify)
    {
        var requested = new ConcurrentDictionary<Guid, TaskCompletionSource<Guid>>();
        await using var worker = env.CreateClient(new AgentPgOptions().MaxConcurrentStreamingRuns, o => o.Hooks = new AgentPgHooks
        {
            OnApprovalRequested = (request, _) =>
            {
                if (requested.TryGetValue(request.RunId, out var waiting))
                {
                    waiting.TrySetResult(request.ToolExecutionId);
                }

                return Task.CompletedTask;
            },
        });
        worker.RegisterTool(FunctionTool.Create(ToolName, "A tool that needs approval.", () => "done"));
        await worker.StartAsync();
        var approver = viaNotify ? env.CreateClient(new AgentPgOptions().MaxConcurrentStreamingRuns) : worker;
        var arrivals = new ConcurrentDictionary<int, TaskCompletionSource<long>>();
        void OnRequest(object? sender, RecordedRequest request)
        {
            var now = Stopwatch.GetTimestamp();
            if (request.IsMessagesCall && request.Body is { } body && body.GetRawText() is var text
                && text.Contains("\"tool_result\"", StringComparison.Ordinal) && TryGetMarker(text, out var n) && arrivals.TryGetValue(n, out var arrival))
            {
                arrival.TrySetResult(now);
            }
        }

        env.Claude.Respond(request => request.ToolResults.Count == 0 && request.LastUserText.Contains(Marker, StringComparison.Ordinal)
            ? FakeReply.ToolUse(ToolName, new { })
            : FakeReply.Text(BenchEnvironment.Reply));
        env.Claude.RequestReceived += OnRequest;
        try
        {
            var agent = await worker.CreateAgentAsync(new AgentDefinition
            {
                Name = "bench_approvals_" + Guid.NewGuid().ToString("N")[..8],
                Model = "claude-sonnet-4-5",
                SystemPrompt = "You are a helpful assistant.",
                MaxTokens = 1024,
                Tools = [ToolName],
                ToolsRequiringApproval = [ToolName],
            });
            var total = options.Warmup + options.Runs;
            var sessions = await BenchEnvironment.CreateSessionsAsync(worker, total);
            await env.SettleAsync($"{BenchEnvironment.Schema}.agentpg_runs", $"{BenchEnvironment.Schema}.agentpg_sessions");

            var latency = new LatencySamples();
            var failed = 0;
            for (var i = 0; i < total; i++)
            {
                var arrival = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
                arrivals[i] = arrival;
                var request = new TaskCompletionSource<Guid>(TaskCreationOptions.RunContinuationsAsynchronously);
                // The hook may fire before RunFastAsync returns the id: FirstRequestAsync then finds the request in the inbox.
                var runId = await worker.RunFastAsync(sessions[i], agent.Id, string.Create(CultureInfo.InvariantCulture, $"Do it. {Marker}{i}]"));
                requested[runId] = request;
                var executionId = await FirstRequestAsync(approver, sessions[i], request.Task);
                await approver.ApproveToolCallAsync(executionId);
                var committed = Stopwatch.GetTimestamp();
                var arrived = await arrival.Task.WaitAsync(TimeSpan.FromSeconds(30));
                var completion = await env.Completions.WaitAsync(runId).WaitAsync(TimeSpan.FromSeconds(30));
                env.Completions.Forget(runId);
                arrivals.TryRemove(i, out _);
                requested.TryRemove(runId, out _);
                if (completion.State != "completed")
                {
                    failed++;
                }

                if (i >= options.Warmup)
                {
                    latency.Add(LatencySamples.Milliseconds(committed, arrived));
                }
            }

            return new ApprovalResult(viaNotify, latency.Summarize(), failed);
        }
        finally
        {
            env.Claude.RequestReceived -= OnRequest;
            env.Claude.Respond(_ => FakeReply.Text(BenchEnvironment.Reply));
            if (viaNotify)
            {
                await approver.DisposeAsync();
            }
        }
    }

    /// <summary>The run's request id: from the hook, or (when the hook fired before the run id was registered) from the inbox.</summary>
    private static async Task<Guid> FirstRequestAsync(AgentPgClient approver, Guid session, Task<Guid> fromHook)
    {
        var deadline = Stopwatch.GetTimestamp() + (Stopwatch.Frequency * 30);
        while (true)
        {
            var done = await Task.WhenAny(fromHook, Task.Delay(TimeSpan.FromMilliseconds(50)));
            if (done == fromHook)
            {
                return await fromHook;
            }

            if (await approver.GetPendingApprovalsAsync(session) is [var pending, ..])
            {
                return pending.ToolExecutionId;
            }

            if (Stopwatch.GetTimestamp() > deadline)
            {
                throw new TimeoutException("No approval request within 30 s.");
            }
        }
    }

    private static bool TryGetMarker(string text, out int n)
    {
        n = -1;
        var start = text.LastIndexOf(Marker, StringComparison.Ordinal);
        if (start < 0)
        {
            return false;
        }

        start += Marker.Length;
        var end = text.IndexOf(']', start);
        return end > start && int.TryParse(text.AsSpan(start, end - start), NumberStyles.None, CultureInfo.InvariantCulture, out n);
    }
}

internal sealed record ApprovalResult(bool ViaNotify, LatencySummary Latency, int Failed);
