using System.Diagnostics;
using AgentPg.Testing;

namespace AgentPg.Benchmarks;

/// <summary>Throughput of single-iteration streaming runs (one text reply, no tools) against a zero-latency model.</summary>
/// <remarks>
/// <para><b>Closed loop</b> (the target figure): <c>--concurrency</c> producers share one started client whose
/// MaxConcurrentStreamingRuns is the same number. Each producer creates a run (<c>RunFastAsync</c>) in a fresh session,
/// waits until it is final, and starts the next, so C runs are always in the system. Runs/s = runs that completed inside
/// the measured window / its length, end to end: creation, claim, iteration start, model stream, completion.</para>
/// <para><b>Drain</b> (the engine alone): a backlog of pending runs is created with a client that is not started, then a
/// client with the same MaxConcurrentStreamingRuns starts and processes them all; runs/s = backlog / time to the last
/// completion. This has the same scope as the pgbench script (no run creation in the timed part).</para>
/// <para>Each run has its own session so every request carries one user message, as in the pgbench script; sessions are
/// created beforehand.</para>
/// </remarks>
internal static class ThroughputBenchmark
{
    // Long enough for the JIT's tiering to settle in a fresh process (the closed loop is the first phase); on a busy
    // 2-core machine 10 s was not.
    private static readonly TimeSpan s_minimumWarmup = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan s_completionTimeout = TimeSpan.FromSeconds(120);

    // The tables a run writes, settled before a timed phase.
    private static readonly string[] TimedTables =
        [.. new[] { "agentpg_runs", "agentpg_sessions", "agentpg_messages", "agentpg_iterations" }
            .Select(table => $"{BenchEnvironment.Schema}.{table}")];

    /// <param name="shape">Another model, tools and agent (the tool-heavy phase); <see langword="null"/>: single-iteration text runs.</param>
    public static async Task<ThroughputResult> RunClosedLoopAsync(BenchEnvironment env, BenchOptions options, DbCounters counters, ClosedLoopShape? shape = null)
    {
        var concurrency = options.Concurrency;
        await using var client = env.CreateClient(concurrency, claude: shape?.Claude);
        foreach (var tool in shape?.Tools ?? [])
        {
            client.RegisterTool(tool);
        }

        await client.StartAsync();
        var agent = shape is null ? await BenchEnvironment.CreateAgentAsync(client) : await shape.CreateAgentAsync(client);
        var minimumWarmup = options.Smoke ? TimeSpan.Zero : s_minimumWarmup;

        // Enough fresh sessions for the warm-up and the window at a generous guess of the rate (3 000 runs/s, above pgbench's
        // lifecycle on the project's machine); if they run out, sessions are reused round robin and the report says so.
        var budgetSeconds = minimumWarmup.TotalSeconds + options.Seconds;
        var sessions = await env.CreateSessionsInBulkAsync(options.Smoke ? 2_000 : Math.Max(20_000, options.Warmup + (int)(budgetSeconds * 3_000)));
        var nextSession = -1;
        var reusedSessions = false;
        await env.SettleAsync(TimedTables);

        long windowStart = 0;
        var windowEnd = long.MaxValue;
        long completed = 0;
        long inWindow = 0;
        long failed = 0;
        var latencies = new LatencySamples();
        using var stop = new CancellationTokenSource();

        async Task ProduceAsync()
        {
            while (!stop.IsCancellationRequested)
            {
                var index = Interlocked.Increment(ref nextSession);
                if (index >= sessions.Length)
                {
                    reusedSessions = true;
                }

                var created = Stopwatch.GetTimestamp();
                var runId = await client.RunFastAsync(sessions[index % sessions.Length], agent.Id, "Say hello.");
                var completion = await env.Completions.WaitAsync(runId).WaitAsync(s_completionTimeout);
                env.Completions.Forget(runId);
                Interlocked.Increment(ref completed);
                if (completion.State != "completed")
                {
                    Interlocked.Increment(ref failed);
                }

                var start = Interlocked.Read(ref windowStart);
                if (start != 0 && completion.Timestamp >= start && completion.Timestamp <= Interlocked.Read(ref windowEnd))
                {
                    Interlocked.Increment(ref inWindow);
                    latencies.Add(LatencySamples.Milliseconds(created, completion.Timestamp));
                }
            }
        }

        var began = Stopwatch.GetTimestamp();
        var producers = Enumerable.Range(0, concurrency).Select(_ => Task.Run(ProduceAsync)).ToArray();
        var analyzed = false;
        while (!analyzed || Interlocked.Read(ref completed) < options.Warmup || Stopwatch.GetElapsedTime(began) < minimumWarmup)
        {
            await Task.WhenAny(Task.WhenAll(producers), Task.Delay(50));
            ThrowIfFaulted(producers);
            if (!analyzed && (Interlocked.Read(ref completed) >= options.Warmup / 2 && Stopwatch.GetElapsedTime(began) >= minimumWarmup / 2))
            {
                // Steady state, as production runs: the tables were empty when analyzed above, and every statement the
                // client prepared since is planned for empty tables (a hash join over all content blocks, an index scan
                // over all of an agent's runs) until an ANALYZE invalidates it; autovacuum's next visit can be a minute
                // away, most of a timed window. Analyzed halfway through the warm-up, the statements are planned again
                // for tables with history, and the window measures the engine rather than plans for empty tables.
                await env.AnalyzeAsync(TimedTables);
                analyzed = true;
            }
        }

        var profile = await DbProfile.CreateAsync(env);
        if (profile is not null)
        {
            await profile.BeginAsync(env);
        }

        var before = await counters.TakeAsync(env);
        Interlocked.Exchange(ref windowStart, Stopwatch.GetTimestamp());
        await Task.WhenAny(Task.WhenAll(producers), Task.Delay(TimeSpan.FromSeconds(options.Seconds)));
        var end = Stopwatch.GetTimestamp();
        Interlocked.Exchange(ref windowEnd, end);
        var after = await counters.TakeAsync(env);
        var profiled = profile is null ? null : await profile.EndAsync(env);
        ThrowIfFaulted(producers);
        await stop.CancelAsync();
        await Task.WhenAll(producers);
        if (profile is not null)
        {
            await profile.WriteAsync(env, shape is null ? "closed loop" : "closed loop (tools)", profiled!, Interlocked.Read(ref inWindow));
        }

        var seconds = Stopwatch.GetElapsedTime(windowStart, end).TotalSeconds;
        return new ThroughputResult(concurrency, concurrency, inWindow, seconds, inWindow / seconds, Interlocked.Read(ref failed),
            latencies.Summarize(), before.PerRun(after, inWindow), reusedSessions);
    }

    public static async Task<ThroughputResult> RunDrainAsync(BenchEnvironment env, BenchOptions options, DbCounters counters, int backlog)
    {
        var concurrency = options.Concurrency;
        var agent = default(AgentDefinition);
        var runs = new Guid[backlog];
        var producer = env.CreateClient(concurrency);
        await using (producer)
        {
            agent = await BenchEnvironment.CreateAgentAsync(producer);
            var sessions = await env.CreateSessionsInBulkAsync(backlog);
            await Parallel.ForAsync(0, backlog, new ParallelOptions { MaxDegreeOfParallelism = 8 },
                async (i, ct) => runs[i] = await producer.RunFastAsync(sessions[i], agent.Id, "Say hello.", cancellationToken: ct));
        }

        await env.SettleAsync(TimedTables);

        var waits = runs.Select(env.Completions.WaitAsync).ToArray();
        await using var worker = env.CreateClient(concurrency);
        var profile = await DbProfile.CreateAsync(env);
        if (profile is not null)
        {
            await profile.BeginAsync(env);
        }

        var before = await counters.TakeAsync(env);
        var started = Stopwatch.GetTimestamp();
        await worker.StartAsync();
        var completions = await Task.WhenAll(waits).WaitAsync(TimeSpan.FromSeconds(Math.Max(120, backlog / 50)));
        var last = completions.Max(c => c.Timestamp);
        var after = await counters.TakeAsync(env);
        if (profile is not null)
        {
            await profile.WriteAsync(env, "drain", await profile.EndAsync(env), backlog);
        }
        foreach (var run in runs)
        {
            env.Completions.Forget(run);
        }

        var seconds = Stopwatch.GetElapsedTime(started, last).TotalSeconds;
        var failed = completions.Count(c => c.State != "completed");
        var latencies = new LatencySamples();
        return new ThroughputResult(0, concurrency, backlog, seconds, backlog / seconds, failed, latencies.Summarize(),
            before.PerRun(after, backlog), false);
    }

    private static void ThrowIfFaulted(Task[] producers)
    {
        if (producers.FirstOrDefault(p => p.IsFaulted) is { } faulted)
        {
            throw new InvalidOperationException("A producer failed: " + faulted.Exception!.GetBaseException().Message, faulted.Exception);
        }
    }
}

/// <summary>What the closed loop runs instead of single-iteration text runs: its own fake Claude, the tools the client
/// registers, and the agent.</summary>
internal sealed record ClosedLoopShape(FakeClaudeServer Claude, IReadOnlyList<ITool> Tools, Func<AgentPgClient, Task<AgentDefinition>> CreateAgentAsync);

/// <param name="Producers">Closed-loop producers (0 for a drain).</param>
/// <param name="MaxConcurrentStreamingRuns">The worker's slots.</param>
internal sealed record ThroughputResult(int Producers, int MaxConcurrentStreamingRuns, long Runs, double Seconds, double RunsPerSecond,
    long Failed, LatencySummary EndToEnd, DbCounters.Cost Cost, bool ReusedSessions);
