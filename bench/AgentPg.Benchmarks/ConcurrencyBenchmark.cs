using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using AgentPg.Testing;
using Npgsql;

namespace AgentPg.Benchmarks;

/// <summary>Many slow streaming runs at once on one instance with a small connection pool (docs/architecture.md,
/// "Performance targets": 1 000 concurrent streams, a pool of at most 20, at most 300 MB).</summary>
/// <remarks>
/// <para>One client, <c>MaxConcurrentStreamingRuns</c> = <c>--streams</c>, on a data source of its own with
/// <c>Maximum Pool Size=20</c> and an application name of its own. It is started, then <c>--streams</c> runs are created
/// at once through the same client (so creation competes for the same 20 connections), each in its own session. The
/// fake Claude streams every answer for about 3 s: a delta every 50 ms. Every second run first asks for a tool (its
/// answer streams for 3 s too, then the tool runs and a second answer streams), so half the runs take two model calls.</para>
/// <para>While they run, a sampler reads <c>pg_stat_activity</c> every 25 ms on the harness's own connection: the
/// instance's connections (its pooled ones by application name, and its LISTEN connection), how many are not idle,
/// how many are idle in a transaction, and the age of the oldest open transaction among them. The peak working set of
/// this process (AgentPg, the harness and the fake Claude with its 1 000 open HTTP streams) is sampled at the same
/// time. Dispatch: <c>RunFastAsync</c> returned → the run's first request at the fake.</para>
/// </remarks>
internal static class ConcurrencyBenchmark
{
    public const int PoolSize = 20;
    public const string ApplicationName = "agentpg-bench-concurrency";
    private const string Marker = "[conc:";
    private const string ToolName = "bench_lookup";
    private const int ChunkSize = 8;
    private static readonly TimeSpan s_sampleEvery = TimeSpan.FromMilliseconds(25);

    public static async Task<ConcurrencyResult> RunAsync(BenchEnvironment env, BenchOptions options)
    {
        var streams = options.Streams;
        // About 3 s per answer: the frames are message_start, content_block_start, ping, the text chunks, content_block_stop,
        // message_delta and message_stop (tool_use blocks add three frames each), one every 50 ms.
        var delay = TimeSpan.FromMilliseconds(50);
        var streamSeconds = options.Smoke ? 0.5 : 3.0;
        var frames = (int)(streamSeconds / delay.TotalSeconds);
        var text = new string('x', Math.Max(1, frames - 6) * ChunkSize);
        var toolText = new string('y', Math.Max(1, frames - 9) * ChunkSize);
        var arrivals = new ConcurrentDictionary<int, long>();
        var requests = 0;
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
        {
            RecordRequests = false,
            StreamChunkSize = ChunkSize,
            Responder = request =>
            {
                Interlocked.Increment(ref requests);
                var wantsTool = request.LastUserText.Contains("[tool]", StringComparison.Ordinal);
                var reply = wantsTool && request.ToolResults.Count == 0
                    ? FakeReply.Message(FakeContentBlock.Text(toolText), FakeContentBlock.ToolUse(ToolName, new { q = "x" }))
                    : FakeReply.Text(text);
                return reply with { EventDelay = delay };
            },
        });
        claude.RequestReceived += (_, request) =>
        {
            var now = Stopwatch.GetTimestamp();
            if (request.IsMessagesCall && request.Body is { } body && TryGetMarker(body.GetRawText(), out var n))
            {
                arrivals.TryAdd(n, now);
            }
        };

        var builder = new NpgsqlDataSourceBuilder(env.Connection.ConnectionString);
        builder.ConnectionStringBuilder.MaxPoolSize = PoolSize;
        builder.ConnectionStringBuilder.ApplicationName = ApplicationName;
        await using var dataSource = builder.Build();
        await using var client = AgentPgClient.Create(dataSource, new AgentPgOptions
        {
            Schema = BenchEnvironment.Schema,
            ApiKey = claude.ApiKey,
            BaseUrl = claude.BaseUrl,
            InstanceName = "bench-concurrency",
            MaxConcurrentStreamingRuns = streams,
        });
        client.RegisterTool(FunctionTool.Create(ToolName, "Looks something up.", (string q) => "found " + q));
        var agent = await client.CreateAgentAsync(new AgentDefinition
        {
            Name = "bench_conc_" + Guid.NewGuid().ToString("N")[..8],
            Model = "claude-sonnet-4-5",
            SystemPrompt = "You are a helpful assistant.",
            MaxTokens = 1024,
            Tools = [ToolName],
        });
        var sessions = await env.CreateSessionsInBulkAsync(streams);
        await env.SettleAsync($"{BenchEnvironment.Schema}.agentpg_runs", $"{BenchEnvironment.Schema}.agentpg_sessions");
        await client.StartAsync();

        var listenName = "agentpg-listen:" + client.InstanceId;
        listenName = listenName.Length > 63 ? listenName[..63] : listenName;
        await using var sampler = new ActivitySampler(env.DataSource, listenName);
        sampler.Start();
        var cpu = new CpuMeter();
        var cpuBefore = cpu.Take();
        var began = Stopwatch.GetTimestamp();

        // All at once: every creation is in flight together and competes for the instance's 20 connections.
        var committed = new long[streams];
        var runs = await Task.WhenAll(Enumerable.Range(0, streams).Select(i => Task.Run(async () =>
        {
            var prompt = string.Create(CultureInfo.InvariantCulture, $"Tell me something. {Marker}{i}]{(i % 2 == 1 ? " [tool]" : "")}");
            var runId = await client.RunFastAsync(sessions[i], agent.Id, prompt);
            committed[i] = Stopwatch.GetTimestamp();
            return runId;
        })));
        var created = Stopwatch.GetElapsedTime(began);

        var timeout = TimeSpan.FromSeconds(Math.Max(300, streams / 2));
        var completions = await Task.WhenAll(runs.Select(env.Completions.WaitAsync)).WaitAsync(timeout);
        var elapsed = Stopwatch.GetElapsedTime(began, completions.Max(c => c.Timestamp));
        var cpuPerRun = cpuBefore.PerRun(cpu.Take(), streams);
        var peak = await sampler.StopAsync();
        foreach (var run in runs)
        {
            env.Completions.Forget(run);
        }

        var dispatch = new LatencySamples();
        for (var i = 0; i < streams; i++)
        {
            if (arrivals.TryGetValue(i, out var arrived))
            {
                dispatch.Add(LatencySamples.Milliseconds(committed[i], arrived));
            }
        }

        var failed = completions.Count(c => c.State != "completed");
        return new ConcurrencyResult(streams, PoolSize, streamSeconds, completions.Length - failed, failed, Volatile.Read(ref requests),
            created, elapsed, peak, cpuPerRun, dispatch.Summarize());
    }

    private static bool TryGetMarker(string text, out int n)
    {
        n = -1;
        var start = text.IndexOf(Marker, StringComparison.Ordinal);
        if (start < 0)
        {
            return false;
        }

        start += Marker.Length;
        var end = text.IndexOf(']', start);
        return end > start && int.TryParse(text.AsSpan(start, end - start), NumberStyles.None, CultureInfo.InvariantCulture, out n);
    }

    public static bool Print(ConcurrencyResult r)
    {
        const double memoryTargetMb = 300;
        var p = r.Peak;
        var meets = r.Failed == 0 && r.Completed == r.Streams && p.Connections <= r.PoolSize && p.WorkingSetBytes <= memoryTargetMb * 1024 * 1024;
        Console.WriteLine();
        Console.WriteLine($"CONCURRENCY  {r.Streams} streaming runs created at once on one instance (MaxConcurrentStreamingRuns={r.Streams}, " +
                          $"Maximum Pool Size={r.PoolSize}); every answer streams for ~{r.StreamSeconds:0.0} s,");
        Console.WriteLine("             a delta every 50 ms; every second run calls one tool first (two model calls); pg_stat_activity and the " +
                          "working set sampled every 25 ms");
        Console.WriteLine($"  {"done",6} {"failed",6} {"calls",6} {"create s",8} {"total s",7} {"peak conns",10} {"peak busy",9} {"idle in xact",12} " +
                          $"{"oldest xact",11} {"peak WS",9} {"peak heap",9} {"cpu app",8} {"cpu db",7}");
        Console.WriteLine($"  {r.Completed,6} {r.Failed,6} {r.ModelCalls,6} {r.CreateTime.TotalSeconds,8:0.0} {r.Elapsed.TotalSeconds,7:0.0} " +
                          $"{p.Connections,10} {p.Busy,9} {p.IdleInTransaction,12} {p.OldestTransaction.TotalMilliseconds,9:0}ms " +
                          $"{p.WorkingSetBytes / 1048576.0,6:0} MB {p.HeapBytes / 1048576.0,6:0} MB {r.Cpu.App,8:0.00} {r.Cpu.Server,7:0.00}");
        var d = r.Dispatch;
        Console.WriteLine($"  dispatch under load (RunFastAsync returned -> first request at the fake), {d.Count} runs: p50 {d.P50:0.0} ms, " +
                          $"p95 {d.P95:0.0} ms, p99 {d.P99:0.0} ms, max {d.Max:0.0} ms");
        Console.WriteLine($"  targets: all complete, connections <= {r.PoolSize}, working set <= {memoryTargetMb:0} MB: {(meets ? "meets" : "MISSES")}; " +
                          $"the oldest transaction of the instance ({p.OldestTransaction.TotalMilliseconds:0} ms) against a {r.StreamSeconds:0.0} s stream " +
                          "shows whether one is held across a stream");
        return r.Failed == 0 && r.Completed == r.Streams;
    }

    /// <summary>Samples pg_stat_activity (on the harness's connection) and this process's memory until stopped.</summary>
    private sealed class ActivitySampler(NpgsqlDataSource harness, string listenName) : IAsyncDisposable
    {
        private readonly CancellationTokenSource _stop = new();
        private Task<ActivityPeak>? _loop;

        public void Start() => _loop = Task.Run(LoopAsync);

        public async Task<ActivityPeak> StopAsync()
        {
            await _stop.CancelAsync();
            return await _loop!;
        }

        public async ValueTask DisposeAsync()
        {
            if (!_stop.IsCancellationRequested)
            {
                await _stop.CancelAsync();
            }

            if (_loop is not null)
            {
                try
                {
                    await _loop;
                }
                catch (Exception)
                {
                    // Reported by StopAsync when it matters.
                }
            }

            _stop.Dispose();
        }

        private async Task<ActivityPeak> LoopAsync()
        {
            var peak = new ActivityPeak(0, 0, 0, TimeSpan.Zero, 0, 0);
            await using var connection = await harness.OpenConnectionAsync();
            await using var command = new NpgsqlCommand("""
                SELECT count(*),
                       count(*) FILTER (WHERE state <> 'idle'),
                       count(*) FILTER (WHERE state LIKE 'idle in transaction%'),
                       coalesce(extract(epoch FROM max(clock_timestamp() - xact_start)), 0)::float8
                  FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name IN ($1, $2)
                """, connection);
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = ApplicationName });
            command.Parameters.Add(new NpgsqlParameter<string> { TypedValue = listenName });
            await command.PrepareAsync();
            while (!_stop.IsCancellationRequested)
            {
                await using (var reader = await command.ExecuteReaderAsync())
                {
                    await reader.ReadAsync();
                    peak = peak with
                    {
                        Connections = Math.Max(peak.Connections, reader.GetInt64(0)),
                        Busy = Math.Max(peak.Busy, reader.GetInt64(1)),
                        IdleInTransaction = Math.Max(peak.IdleInTransaction, reader.GetInt64(2)),
                        OldestTransaction = TimeSpan.FromSeconds(Math.Max(peak.OldestTransaction.TotalSeconds, reader.GetDouble(3))),
                    };
                }

                using (var self = Process.GetCurrentProcess())
                {
                    peak = peak with
                    {
                        WorkingSetBytes = Math.Max(peak.WorkingSetBytes, self.WorkingSet64),
                        HeapBytes = Math.Max(peak.HeapBytes, GC.GetTotalMemory(forceFullCollection: false)),
                    };
                }

                try
                {
                    await Task.Delay(s_sampleEvery, _stop.Token);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }

            return peak;
        }
    }
}

/// <param name="Connections">The instance's open connections (pooled and LISTEN), at most.</param>
/// <param name="Busy">Of those, not idle (running a statement or in a transaction), at most.</param>
/// <param name="IdleInTransaction">Of those, idle inside an open transaction, at most.</param>
/// <param name="OldestTransaction">The age of the oldest open transaction of the instance seen by any sample.</param>
internal sealed record ActivityPeak(long Connections, long Busy, long IdleInTransaction, TimeSpan OldestTransaction, long WorkingSetBytes, long HeapBytes);

internal sealed record ConcurrencyResult(int Streams, int PoolSize, double StreamSeconds, int Completed, int Failed, int ModelCalls,
    TimeSpan CreateTime, TimeSpan Elapsed, ActivityPeak Peak, CpuPerRun Cpu, LatencySummary Dispatch);
