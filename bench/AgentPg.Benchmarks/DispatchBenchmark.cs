using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using AgentPg.Testing;

namespace AgentPg.Benchmarks;

/// <summary>Dispatch latency (docs/architecture.md, "Performance targets"): from <c>RunFastAsync</c> returning (its transaction committed) to the model
/// request arriving at the fake Claude (<see cref="FakeClaudeServer.RequestReceived"/>).</summary>
/// <remarks>
/// Runs are issued one at a time: the next run is created only after the previous one completed, so the worker is idle
/// and nothing queues; what is measured is the path itself. Each run has its own session (created beforehand).
/// Two producers: the started client itself (it wakes its own worker directly), and a second, never-started client,
/// as another process would be (the worker learns of the run from the <c>agentpg_run_created</c> NOTIFY).
/// </remarks>
internal static class DispatchBenchmark
{
    private const string Marker = "[bench:";

    public static async Task<DispatchResult> RunAsync(BenchEnvironment env, BenchOptions options, bool viaNotify)
    {
        await using var worker = env.CreateClient(new AgentPgOptions().MaxConcurrentStreamingRuns);
        await worker.StartAsync();
        var producer = viaNotify ? env.CreateClient(new AgentPgOptions().MaxConcurrentStreamingRuns) : worker;
        try
        {
            var agent = await BenchEnvironment.CreateAgentAsync(worker);
            var total = options.Warmup + options.Runs;
            var sessions = await BenchEnvironment.CreateSessionsAsync(worker, total);
            await env.SettleAsync($"{BenchEnvironment.Schema}.agentpg_runs", $"{BenchEnvironment.Schema}.agentpg_sessions");

            var arrivals = new ConcurrentDictionary<int, TaskCompletionSource<long>>();
            void OnRequest(object? sender, RecordedRequest request)
            {
                var now = Stopwatch.GetTimestamp();
                if (request.IsMessagesCall && TryGetMarker(request, out var n) && arrivals.TryGetValue(n, out var arrival))
                {
                    arrival.TrySetResult(now);
                }
            }

            var dispatch = new LatencySamples();
            var endToEnd = new LatencySamples();
            var failed = 0;
            using var breakdown = options.Breakdown ? new Breakdown() : null;
            var cpu = new CpuMeter();
            var cpuBefore = default(CpuMeter.Sample);
            env.Claude.RequestReceived += OnRequest;
            try
            {
                for (var i = 0; i < total; i++)
                {
                    if (i == options.Warmup)
                    {
                        cpuBefore = cpu.Take();
                    }

                    var arrival = new TaskCompletionSource<long>(TaskCreationOptions.RunContinuationsAsynchronously);
                    arrivals[i] = arrival;
                    breakdown?.Reset();
                    var runId = await producer.RunFastAsync(sessions[i], agent.Id, string.Create(CultureInfo.InvariantCulture, $"Say hello. {Marker}{i}]"));
                    var committed = Stopwatch.GetTimestamp();
                    var arrived = await arrival.Task.WaitAsync(TimeSpan.FromSeconds(30));
                    var completion = await env.Completions.WaitAsync(runId).WaitAsync(TimeSpan.FromSeconds(30));
                    env.Completions.Forget(runId);
                    arrivals.TryRemove(i, out _);
                    if (completion.State != "completed")
                    {
                        failed++;
                    }

                    if (i >= options.Warmup)
                    {
                        dispatch.Add(LatencySamples.Milliseconds(committed, arrived));
                        endToEnd.Add(LatencySamples.Milliseconds(committed, completion.Timestamp));
                        if (breakdown is not null)
                        {
                            await breakdown.AddAsync(committed, arrived, completion.Timestamp);
                        }
                    }
                }
            }
            finally
            {
                env.Claude.RequestReceived -= OnRequest;
            }

            var cpuPerRun = cpuBefore.PerRun(cpu.Take(), options.Runs);
            return new DispatchResult(viaNotify, worker.Options.MaxConcurrentStreamingRuns, dispatch.Summarize(), endToEnd.Summarize(), failed,
                cpuPerRun, breakdown is null ? null : breakdown.Print);
        }
        finally
        {
            if (viaNotify)
            {
                await producer.DisposeAsync();
            }
        }
    }

    private static bool TryGetMarker(RecordedRequest request, out int n)
    {
        n = -1;
        if (request.Body is not { } body)
        {
            return false;
        }

        var text = body.GetRawText();
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

/// <param name="Cpu">CPU milliseconds per measured run, creation to completion (this process; PostgreSQL).</param>
internal sealed record DispatchResult(bool ViaNotify, int MaxConcurrentStreamingRuns, LatencySummary Dispatch, LatencySummary EndToEnd, int Failed,
    CpuPerRun Cpu, Action<string>? PrintBreakdown);
