using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Reflection;
using AgentPg.Testing;

namespace AgentPg.Benchmarks;

/// <summary>Worker processes on one database draining a backlog: runs/s of <c>--workers</c> processes against 1 process
/// draining the same backlog, and a check that no run was claimed twice.</summary>
/// <remarks>
/// <para>For each process count, the worker processes (this executable in worker mode, each one started client with
/// <c>MaxConcurrentStreamingRuns</c> = <c>--concurrency</c>) start, and drain a warm-up backlog (so their JIT has tiered
/// up). Then the measured backlog of single-iteration streaming runs (each in a fresh session, its prompt carrying a
/// number) is created by a never-started client in one transaction, so it appears all at once: the clock starts when
/// that transaction committed and stops at the last run's <c>agentpg_run_finalized</c> NOTIFY. The fake Claude runs in
/// this process, zero latency, shared by the workers.</para>
/// <para><b>Claimed twice</b> is checked two ways. In the database: every run of the backlog is completed, its
/// <c>claim_epoch</c> is 1 (every claim bumps it, so a second claim, a release or a rescue leaves it higher), and it has
/// exactly one iteration row. At the model: every run's number arrived in exactly one request (a second claim that got as
/// far as calling the model shows up as a second request).</para>
/// </remarks>
internal static class ScaleOutBenchmark
{
    private const string Marker = "[scale:";

    public static async Task<ScaleOutResult> RunAsync(BenchEnvironment env, BenchOptions options, DbCounters counters, Action<string> progress)
    {
        var backlog = options.Smoke ? 60 : Math.Max(3_000, options.Runs * 3);
        var rows = new List<ScaleOutRow>();
        foreach (var workers in new[] { 1, options.Workers }.Distinct())
        {
            progress($"scaleout: {workers} worker process(es) draining {backlog} pending runs …");
            rows.Add(await DrainAsync(env, options, counters, workers, backlog));
        }

        var problems = rows.SelectMany(r => r.Problems.Select(p => $"{r.Workers} process(es): {p}")).ToList();
        return new ScaleOutResult(backlog, options.Concurrency, rows, problems);
    }

    private static async Task<ScaleOutRow> DrainAsync(BenchEnvironment env, BenchOptions options, DbCounters counters, int workers, int backlog)
    {
        var requests = new ConcurrentDictionary<int, int>();
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
        {
            RecordRequests = false,
            StreamChunkSize = 64,
            Responder = request =>
            {
                if (TryGetMarker(request.LastUserText, Marker, out var n))
                {
                    requests.AddOrUpdate(n, 1, static (_, c) => c + 1);
                }

                return FakeReply.Text(BenchEnvironment.Reply);
            },
        });

        var runs = new Guid[backlog];
        var tag = Guid.NewGuid().ToString("N")[..8];
        await using var producer = env.CreateClient(1, claude: claude);
        var agent = await producer.CreateAgentAsync(new AgentDefinition
        {
            Name = "bench_scale_" + tag,
            Model = "claude-sonnet-4-5",
            SystemPrompt = "You are a helpful assistant.",
            MaxTokens = 1024,
            Tools = [],
        });
        var warmup = options.Smoke ? 5 * workers : 300 * workers;
        var sessions = await env.CreateSessionsInBulkAsync(backlog + warmup);
        await env.SettleAsync($"{BenchEnvironment.Schema}.agentpg_runs", $"{BenchEnvironment.Schema}.agentpg_sessions",
            $"{BenchEnvironment.Schema}.agentpg_messages", $"{BenchEnvironment.Schema}.agentpg_iterations");

        var processes = new List<WorkerProcess>();
        try
        {
            var instances = Enumerable.Range(1, workers).Select(w => $"bench-scale-{tag}-w{w}").ToArray();
            processes.AddRange(await Task.WhenAll(instances.Select(id => WorkerProcess.StartAsync(id, claude, options.Concurrency))));

            var warm = await CreateAllAtOnceAsync(env, producer, agent.Id, sessions[backlog..], "[warm:");
            await Task.WhenAll(warm.Select(env.Completions.WaitAsync)).WaitAsync(TimeSpan.FromSeconds(300));
            foreach (var run in warm)
            {
                env.Completions.Forget(run);
            }

            var before = await counters.TakeAsync(env);
            var created = await CreateAllAtOnceAsync(env, producer, agent.Id, sessions[..backlog], Marker, () => Task.CompletedTask);
            var started = created.Committed;
            created.Runs.CopyTo(runs, 0);
            var completions = await Task.WhenAll(runs.Select(env.Completions.WaitAsync)).WaitAsync(TimeSpan.FromSeconds(Math.Max(180, backlog / 20)));
            var last = completions.Max(c => c.Timestamp);
            var cost = before.PerRun(await counters.TakeAsync(env), backlog, clientOperations: false);
            var seconds = Stopwatch.GetElapsedTime(started, last).TotalSeconds;
            foreach (var p in processes)
            {
                await p.StopAsync();
            }

            var problems = new List<string>();
            var failed = completions.Count(c => c.State != "completed");
            if (failed > 0)
            {
                problems.Add($"{failed} runs did not complete");
            }

            var check = await CheckAsync(env, runs);
            if (check.NotCompleted > 0 || check.ClaimedAgain > 0 || check.IterationsOtherThanOne > 0)
            {
                problems.Add($"database: {check.NotCompleted} runs not completed, {check.ClaimedAgain} with claim_epoch <> 1, " +
                             $"{check.IterationsOtherThanOne} without exactly one iteration");
            }

            var calledTwice = requests.Count(r => r.Value > 1);
            var missing = backlog - requests.Count;
            if (calledTwice > 0 || missing > 0)
            {
                problems.Add($"model: {calledTwice} runs called the model more than once, {missing} never");
            }

            var shares = instances.Select(i => check.ClaimsByInstance.GetValueOrDefault(i)).ToArray();
            return new ScaleOutRow(workers, seconds, backlog / seconds, failed, check, calledTwice, missing, shares, cost, problems);
        }
        finally
        {
            foreach (var p in processes)
            {
                await p.DisposeAsync();
            }

            foreach (var run in runs)
            {
                env.Completions.Forget(run);
            }
        }
    }

    private static async Task<Guid[]> CreateAllAtOnceAsync(BenchEnvironment env, AgentPgClient producer, Guid agentId, Guid[] sessions, string marker)
        => (await CreateAllAtOnceAsync(env, producer, agentId, sessions, marker, () => Task.CompletedTask)).Runs;

    /// <summary>Creates one run per session in one transaction, so the workers see them all at once when it commits.</summary>
    private static async Task<(Guid[] Runs, long Committed)> CreateAllAtOnceAsync(BenchEnvironment env, AgentPgClient producer, Guid agentId,
        Guid[] sessions, string marker, Func<Task> beforeCommit)
    {
        var runs = new Guid[sessions.Length];
        await using var connection = await env.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        for (var i = 0; i < sessions.Length; i++)
        {
            runs[i] = await producer.RunFastAsync(transaction, sessions[i], agentId, string.Create(CultureInfo.InvariantCulture, $"Say hello. {marker}{i}]"));
        }

        await beforeCommit();
        await transaction.CommitAsync();
        return (runs, Stopwatch.GetTimestamp());
    }

    private static async Task<ClaimCheck> CheckAsync(BenchEnvironment env, Guid[] runs)
    {
        await using var command = env.DataSource.CreateCommand($"""
            SELECT (SELECT min(i.instance_id) FROM {BenchEnvironment.Schema}.agentpg_iterations i WHERE i.run_id = r.id),
                   r.state::text <> 'completed', r.claim_epoch <> 1,
                   (SELECT count(*) FROM {BenchEnvironment.Schema}.agentpg_iterations i WHERE i.run_id = r.id) <> 1
              FROM {BenchEnvironment.Schema}.agentpg_runs r
             WHERE r.id = ANY($1)
            """);
        command.Parameters.Add(new Npgsql.NpgsqlParameter<Guid[]> { TypedValue = runs });
        var byInstance = new Dictionary<string, int>();
        int notCompleted = 0, claimedAgain = 0, iterations = 0, seen = 0;
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            seen++;
            var instance = reader.IsDBNull(0) ? "(none)" : reader.GetString(0);
            byInstance[instance] = byInstance.GetValueOrDefault(instance) + 1;
            notCompleted += reader.GetBoolean(1) ? 1 : 0;
            claimedAgain += reader.GetBoolean(2) ? 1 : 0;
            iterations += reader.GetBoolean(3) ? 1 : 0;
        }

        return new ClaimCheck(notCompleted + (runs.Length - seen), claimedAgain, iterations, byInstance);
    }

    private static bool TryGetMarker(string text, string marker, out int n)
    {
        n = -1;
        var start = text.IndexOf(marker, StringComparison.Ordinal);
        if (start < 0)
        {
            return false;
        }

        start += marker.Length;
        var end = text.IndexOf(']', start);
        return end > start && int.TryParse(text.AsSpan(start, end - start), NumberStyles.None, CultureInfo.InvariantCulture, out n);
    }

    public static void Print(ScaleOutResult r)
    {
        Console.WriteLine();
        Console.WriteLine($"SCALE-OUT  worker processes (this executable, one client each, MaxConcurrentStreamingRuns={r.Slots}) draining " +
                          $"{r.Backlog} pending single-iteration runs on one database,");
        Console.WriteLine("           zero-latency fake Claude in the parent; warmed up; clock from the commit of the backlog's one transaction to the last run_finalized NOTIFY; " +
                          "per run: write transactions, WAL bytes, PostgreSQL CPU ms");
        Console.WriteLine($"  {"processes",9} {"runs",6} {"s",6} {"runs/s",8} {"vs 1",6} {"failed",6} {"epoch<>1",8} {"iters<>1",8} {"calls>1",7} " +
                          $"{"xacts",6} {"WAL B",7} {"cpu db",7}  claims per process");
        var baseline = r.Rows.FirstOrDefault(x => x.Workers == 1)?.RunsPerSecond ?? double.NaN;
        foreach (var row in r.Rows)
        {
            Console.WriteLine($"  {row.Workers,9} {r.Backlog,6} {row.Seconds,6:0.0} {row.RunsPerSecond,8:0.0} {row.RunsPerSecond / baseline,6:0.00} " +
                              $"{row.Failed,6} {row.Check.ClaimedAgain,8} {row.Check.IterationsOtherThanOne,8} {row.CalledTwice,7} {row.Cost.WriteTransactions,6:0.00} {row.Cost.WalBytes,7:0} {row.Cost.Cpu.Server,7:0.00}  " +
                              string.Join(" / ", row.ClaimShares));
        }

        Console.WriteLine("  no run claimed twice: every run completed with claim_epoch = 1 (each claim bumps it) and one iteration, and its " +
                          $"prompt reached the model once: {(r.Problems.Count == 0 ? "holds" : "VIOLATED")}");
    }
}

/// <param name="NotCompleted">Runs of the backlog that are not completed (or missing).</param>
/// <param name="ClaimedAgain">Runs whose claim_epoch is not 1.</param>
/// <param name="IterationsOtherThanOne">Runs without exactly one iteration row.</param>
internal sealed record ClaimCheck(int NotCompleted, int ClaimedAgain, int IterationsOtherThanOne, IReadOnlyDictionary<string, int> ClaimsByInstance);

internal sealed record ScaleOutRow(int Workers, double Seconds, double RunsPerSecond, int Failed, ClaimCheck Check, int CalledTwice, int NeverCalled,
    int[] ClaimShares, DbCounters.Cost Cost, IReadOnlyList<string> Problems);

internal sealed record ScaleOutResult(int Backlog, int Slots, IReadOnlyList<ScaleOutRow> Rows, IReadOnlyList<string> Problems);

/// <summary>A scale-out worker: this executable in worker mode, driven through its standard input.</summary>
internal sealed class WorkerProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly ConcurrentQueue<string> _output = new();

    private WorkerProcess(Process process) => _process = process;

    public static async Task<WorkerProcess> StartAsync(string instanceId, FakeClaudeServer claude, int slots)
    {
        var info = new ProcessStartInfo(Environment.ProcessPath!)
        {
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        if (Path.GetFileNameWithoutExtension(Environment.ProcessPath!) == "dotnet")
        {
            info.ArgumentList.Add(Assembly.GetEntryAssembly()!.Location);
        }

        foreach (var a in new[] { "worker", instanceId, claude.BaseUrl, claude.ApiKey, slots.ToString(CultureInfo.InvariantCulture) })
        {
            info.ArgumentList.Add(a);
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var worker = new WorkerProcess(process);
        process.OutputDataReceived += (_, e) => worker.OnLine(e.Data);
        process.ErrorDataReceived += (_, e) => worker.OnLine(e.Data);
        process.Exited += (_, _) => worker._ready.TrySetException(new InvalidOperationException(
            $"worker {instanceId} exited before it was ready: {string.Join(" | ", worker._output.TakeLast(10))}"));
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        try
        {
            await worker._ready.Task.WaitAsync(TimeSpan.FromSeconds(120));
        }
        catch
        {
            await worker.DisposeAsync();
            throw;
        }

        return worker;
    }

    public async Task SendAsync(string line)
    {
        await _process.StandardInput.WriteLineAsync(line);
        await _process.StandardInput.FlushAsync();
    }

    public async Task StopAsync()
    {
        if (_process.HasExited)
        {
            return;
        }

        await SendAsync("STOP");
        await _process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
        if (_process.ExitCode != 0)
        {
            throw new InvalidOperationException($"a worker exited with {_process.ExitCode}: {string.Join(" | ", _output.TakeLast(10))}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        _output.Enqueue(line);
        while (_output.Count > 50)
        {
            _output.TryDequeue(out _);
        }

        if (line.StartsWith("READY ", StringComparison.Ordinal))
        {
            _ready.TrySetResult();
        }
    }
}
