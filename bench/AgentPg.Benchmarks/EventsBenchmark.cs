using System.Collections.Concurrent;
using System.Diagnostics;
using AgentPg.Testing;

namespace AgentPg.Benchmarks;

/// <summary>Live run events (docs/streaming.md): how long a streamed text delta takes from the model to a watcher on another
/// client, and what 1 000 concurrent watchers on one instance cost.</summary>
/// <remarks>
/// <para><b>Delta latency.</b> A started client processes streaming runs one at a time; a second, never-started client creates
/// each run and watches it (<c>WatchRunAsync</c>), as a web server would. The fake Claude streams the answer in 16-character
/// chunks, one every <see cref="ChunkInterval"/>; it waits with a <see cref="TimeProvider"/> that stamps the moment each
/// wait ends, which is the moment the next chunk is written to the socket. The text is made of fixed-width numbered
/// chunks, so every character a watcher receives is traced to the chunk that carried it. Two figures: <i>chunk</i> latency,
/// every chunk from the socket to the watcher (it includes the deliberate coalescing wait of up to 50 ms), and <i>event</i>
/// latency, each published delta from the newest chunk it carries to the watcher (the transport: write, NOTIFY, read).</para>
/// <para><b>1 000 watchers.</b> 1 000 streaming runs are created and held at the model; one never-started client watches each
/// (1 000 feeds, the worst case: watchers of one run share one feed). Then the model is released and every watcher must
/// see its run's finish. Measured: the managed heap held per watcher while all wait, the database connections the
/// watching client holds, and the CPU per run of this process and of PostgreSQL compared with the same 1 000 runs
/// unwatched.</para>
/// </remarks>
internal static class EventsBenchmark
{
    public static readonly TimeSpan ChunkInterval = TimeSpan.FromMilliseconds(10);
    private const int ChunkSize = 16;
    private const int ChunksPerAnswer = 60;
    // Smaller with --smoke (set by RunAsync before anything reads them).
    private static int LatencyRuns = 40;
    private static int WatcherCount = 1000;

    /// <summary>Chunk k's text: 16 characters that name k, so a received text can be cut back into chunks.</summary>
    private static string Chunk(int k) => $"[chunk {k:D5}....]";

    private static readonly string s_answer = string.Concat(Enumerable.Range(0, ChunksPerAnswer).Select(Chunk));

    public static async Task<EventsResult> RunAsync(BenchEnvironment env, BenchOptions options, Action<string> progress)
    {
        (LatencyRuns, WatcherCount) = options.Smoke ? (3, 40) : (40, 1000);
        progress($"events: delta latency, {LatencyRuns} watched runs of {ChunksPerAnswer} chunks, one every {ChunkInterval.TotalMilliseconds} ms …");
        var (chunk, @event, events, writesPerRun) = await DeltaLatencyAsync(env);
        progress($"events: {WatcherCount} runs, unwatched (baseline) …");
        var unwatched = await WatchersAsync(env, options, watch: false);
        progress($"events: {WatcherCount} runs, each watched on one never-started client …");
        var watched = await WatchersAsync(env, options, watch: true);
        return new EventsResult(chunk, @event, events, writesPerRun, unwatched, watched);
    }

    private static async Task<(LatencySummary Chunk, LatencySummary Event, int Events, double WritesPerRun)> DeltaLatencyAsync(BenchEnvironment env)
    {
        var stamps = new StampingTimeProvider();
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
        {
            RecordRequests = false,
            StreamChunkSize = ChunkSize,
            TimeProvider = stamps,
        });
        var watching = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        claude.Respond(async (_, cancellationToken) =>
        {
            // The watch is registered before the answer streams, so every chunk is published live.
            await watching.Task.WaitAsync(cancellationToken);
            stamps.Clear();
            return FakeReply.Text(s_answer) with { EventDelay = ChunkInterval };
        });

        await using var worker = CreateClient(env, claude, maxConcurrentStreamingRuns: 1);
        await worker.StartAsync();
        await using var watcher = CreateClient(env, claude, maxConcurrentStreamingRuns: 1);
        var agent = await BenchEnvironment.CreateAgentAsync(worker);
        var sessions = await BenchEnvironment.CreateSessionsAsync(worker, LatencyRuns + 2);

        var chunkLatency = new LatencySamples();
        var eventLatency = new LatencySamples();
        var deltaEvents = 0;
        for (var i = 0; i < sessions.Length; i++)
        {
            var measured = i >= 2; // two warm-up runs
            watching = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            var runId = await watcher.RunFastAsync(sessions[i], agent.Id, "Stream something.");
            var received = new List<(long At, int EndChar)>();
            var text = 0;
            await foreach (var e in watcher.WatchRunAsync(runId))
            {
                var now = Stopwatch.GetTimestamp();
                watching.TrySetResult();
                if (e is TextDeltaEvent delta)
                {
                    text += delta.Text.Length;
                    received.Add((now, text));
                }
            }

            if (text != s_answer.Length)
            {
                throw new InvalidOperationException($"run {runId}: the watcher received {text} characters of text, not {s_answer.Length}");
            }

            if (!measured)
            {
                continue;
            }

            // Frames: message_start, content_block_start, ping, then the text chunks; a stamp precedes every frame.
            var sent = stamps.Snapshot();
            long SentAt(int chunk) => sent[3 + chunk];
            var nextChunk = 0;
            foreach (var (at, endChar) in received)
            {
                var lastChunk = (endChar - 1) / ChunkSize;
                eventLatency.Add(LatencySamples.Milliseconds(SentAt(lastChunk), at));
                for (; nextChunk <= lastChunk; nextChunk++)
                {
                    chunkLatency.Add(LatencySamples.Milliseconds(SentAt(nextChunk), at));
                }
            }

            deltaEvents += received.Count;
        }

        return (chunkLatency.Summarize(), eventLatency.Summarize(), deltaEvents, (double)deltaEvents / LatencyRuns);
    }

    private static async Task<WatchersResult> WatchersAsync(BenchEnvironment env, BenchOptions options, bool watch)
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { RecordRequests = false, StreamChunkSize = ChunkSize });
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var answer = string.Concat(Enumerable.Range(0, 16).Select(Chunk));
        claude.Respond(async (_, cancellationToken) =>
        {
            await gate.Task.WaitAsync(cancellationToken);
            return FakeReply.Text(answer) with { EventDelay = TimeSpan.FromMilliseconds(2) };
        });

        await using var worker = CreateClient(env, claude, options.Concurrency);
        var agent = await BenchEnvironment.CreateAgentAsync(worker);
        var sessions = await env.CreateSessionsInBulkAsync(WatcherCount);
        await worker.StartAsync();
        await using var watcher = CreateClient(env, claude, 1);
        var runs = new Guid[WatcherCount];
        await Parallel.ForAsync(0, WatcherCount, new ParallelOptions { MaxDegreeOfParallelism = 16 },
            async (i, ct) => runs[i] = await watcher.RunFastAsync(sessions[i], agent.Id, "Stream something.", cancellationToken: ct));

        var heapBefore = HeapBytes();
        var attached = 0;
        var allAttached = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var finished = 0;
        var watchers = new List<Task>();
        if (watch)
        {
            foreach (var runId in runs)
            {
                watchers.Add(Task.Run(async () =>
                {
                    var first = true;
                    var text = 0;
                    RunEvent? last = null;
                    await foreach (var e in watcher.WatchRunAsync(runId))
                    {
                        if (first)
                        {
                            first = false;
                            if (Interlocked.Increment(ref attached) == WatcherCount)
                            {
                                allAttached.TrySetResult();
                            }
                        }

                        text += e is TextDeltaEvent d ? d.Text.Length : 0;
                        last = e;
                    }

                    if (last is not RunFinishedEvent { State: RunState.Completed } || text != answer.Length)
                    {
                        throw new InvalidOperationException($"run {runId}: the watch ended with {last?.GetType().Name} after {text} characters");
                    }

                    Interlocked.Increment(ref finished);
                }));
            }

            try
            {
                await allAttached.Task.WaitAsync(TimeSpan.FromMinutes(2));
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"{WatcherCount - Volatile.Read(ref attached)} of {WatcherCount} watchers got no event in 2 minutes");
            }
        }

        // Every watcher is attached and waiting (the model holds every run): what they hold.
        var heapWatching = HeapBytes();
        var connections = await env.ScalarAsync<long>(
            $"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'agentpg-listen:{watcher.InstanceId}'");
        var cpu = new CpuMeter();
        var before = cpu.Take();
        var started = Stopwatch.GetTimestamp();
        gate.TrySetResult();
        await Task.WhenAll(runs.Select(r => env.Completions.WaitAsync(r))).WaitAsync(TimeSpan.FromMinutes(10));
        await Task.WhenAll(watchers).WaitAsync(TimeSpan.FromMinutes(2));
        var elapsed = Stopwatch.GetElapsedTime(started);
        var perRun = before.PerRun(cpu.Take(), WatcherCount);
        foreach (var r in runs)
        {
            env.Completions.Forget(r);
        }

        return new WatchersResult(watch ? finished : 0, (heapWatching - heapBefore) / (double)WatcherCount, connections, elapsed, perRun);
    }

    private static long HeapBytes()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        return GC.GetTotalMemory(forceFullCollection: true);
    }

    private static AgentPgClient CreateClient(BenchEnvironment env, FakeClaudeServer claude, int maxConcurrentStreamingRuns)
        => AgentPgClient.Create(env.DataSource, new AgentPgOptions
        {
            Schema = BenchEnvironment.Schema,
            ApiKey = claude.ApiKey,
            BaseUrl = claude.BaseUrl,
            InstanceName = "bench-events",
            MaxConcurrentStreamingRuns = maxConcurrentStreamingRuns,
        });

    public static void Print(EventsResult r)
    {
        Console.WriteLine();
        Console.WriteLine($"EVENTS  delta latency: model stream (chunk written to the socket by the fake Claude) -> TextDeltaEvent at a watcher on");
        Console.WriteLine($"        another (never-started) client; {LatencyRuns} runs one at a time, {ChunksPerAnswer} chunks of {ChunkSize} chars each, one every " +
                          $"{ChunkInterval.TotalMilliseconds:0} ms; {r.Events} delta events ({r.WritesPerRun:0.0} per run)");
        Console.WriteLine($"  {"what",-44} {"count",7} {"p50",9} {"p95",9} {"p99",9} {"max",9} {"mean",9}  target");
        Row("every chunk (incl. coalescing wait)", r.Chunk, "");
        Row("each event, from its newest chunk", r.Event, r.Event.P50 <= 20 && r.Event.P99 <= 100 ? "p50<=20 p99<=100: meets" : "p50<=20 p99<=100: MISSES");
        Console.WriteLine();
        Console.WriteLine($"  {WatcherCount} streaming runs (16 chunks each), held at the model, then released; slots = --concurrency; cpu = ms per run");
        Console.WriteLine($"  {"what",-44} {"done",7} {"s",7} {"heap/watcher",13} {"LISTEN conns",12} {"cpu app",8} {"cpu db",7}");
        WatchRow("unwatched", r.Unwatched);
        WatchRow($"each run watched (one client, {WatcherCount} feeds)", r.Watched);

        static string Ms(double value) => double.IsNaN(value) ? "-" : $"{value:0.00}ms";

        static void Row(string name, LatencySummary s, string verdict)
            => Console.WriteLine($"  {name,-44} {s.Count,7} {Ms(s.P50),9} {Ms(s.P95),9} {Ms(s.P99),9} {Ms(s.Max),9} {Ms(s.Mean),9}  {verdict}");

        static void WatchRow(string name, WatchersResult w)
            => Console.WriteLine($"  {name,-44} {w.Finished,7} {w.Elapsed.TotalSeconds,7:0.0} {w.HeapBytesPerWatcher / 1024,10:0.0} KB {w.Connections,12} " +
                                 $"{w.Cpu.App,8:0.00} {w.Cpu.Server,7:0.00}");
    }

    /// <summary>The system clock, recording when each timer fires (the fake Claude's wait before its next stream event).</summary>
    private sealed class StampingTimeProvider : TimeProvider
    {
        private readonly ConcurrentQueue<long> _stamps = new();

        public void Clear() => _stamps.Clear();

        public long[] Snapshot() => [.. _stamps];

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
            => System.CreateTimer(s =>
            {
                _stamps.Enqueue(Stopwatch.GetTimestamp());
                callback(s);
            }, state, dueTime, period);
    }
}

/// <param name="Chunk">Every chunk, written by the model → received by the watcher.</param>
/// <param name="Event">Every delta event, from the newest chunk it carries.</param>
internal sealed record EventsResult(LatencySummary Chunk, LatencySummary Event, int Events, double WritesPerRun, WatchersResult Unwatched, WatchersResult Watched);

/// <param name="HeapBytesPerWatcher">Managed heap growth while every watcher waits, divided by the watchers.</param>
/// <param name="Connections">LISTEN connections of the watching client while every watcher waits (its queries use the pool).</param>
internal sealed record WatchersResult(int Finished, double HeapBytesPerWatcher, long Connections, TimeSpan Elapsed, CpuPerRun Cpu);
