using System.Globalization;
using System.Runtime;
using System.Runtime.InteropServices;

namespace AgentPg.Benchmarks;

/// <summary>The compact table on standard output (progress lines go to standard error).</summary>
internal sealed class Report(BenchOptions options, string serverVersion)
{
    private const double DispatchP50Target = 5;
    private const double DispatchP99Target = 25;
    private const double ThroughputRatioTarget = 0.5;

    public void Header()
    {
        Console.WriteLine($"AgentPg benchmarks: PostgreSQL {serverVersion}, {Environment.ProcessorCount} CPUs, " +
                          $"{RuntimeInformation.FrameworkDescription}, {(GCSettings.IsServerGC ? "server" : "workstation")} GC");
        Console.WriteLine("model: FakeClaudeServer in this process, zero latency, streamed reply of one text block (end_turn)");
        Console.WriteLine($"load average at start: {LoadAverage()}");
        Console.WriteLine();
    }

    /// <summary>The machine's load at the end: figures from a machine that other work shares are not comparable.</summary>
    public void Footer() => Console.WriteLine($"load average at end: {LoadAverage()}");

    private static string LoadAverage()
        => File.Exists("/proc/loadavg") ? string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3)) + " (1, 5, 15 min)" : "unknown";

    public void Progress(string message) => Console.Error.WriteLine($"[bench] {message}");

    public void Dispatch(DispatchResult local, DispatchResult remote)
    {
        Console.WriteLine($"DISPATCH  RunFastAsync returned (committed) -> request at the fake Claude; {local.Dispatch.Count} runs per row after " +
                          $"{options.Warmup} warm-up,");
        Console.WriteLine($"          one at a time (next run created when the previous completed), each in its own session, " +
                          $"one started client, MaxConcurrentStreamingRuns={local.MaxConcurrentStreamingRuns}; cpu = ms per run");
        Console.WriteLine($"  {"producer",-30} {"p50",9} {"p95",9} {"p99",9} {"max",9} {"mean",9}   {"commit->final p50",17} {"p99",9}  " +
                          $"{"failed",6} {"cpu app",8} {"cpu db",7} target");
        Row("same client (local wake)", local);
        Row("other client (NOTIFY)", remote);
        Console.WriteLine($"  {"target",-30} {Ms(DispatchP50Target, "<="),9} {"",9} {Ms(DispatchP99Target, "<="),9}");
        Console.WriteLine();
        local.PrintBreakdown?.Invoke("same client");
        remote.PrintBreakdown?.Invoke("other client (NOTIFY)");
        if (local.PrintBreakdown is not null)
        {
            Console.WriteLine();
        }

        static string Ms(double value, string prefix = "") => double.IsNaN(value) ? "-" : $"{prefix}{value:0.00}ms";

        static void Row(string name, DispatchResult r)
        {
            var d = r.Dispatch;
            var verdict = d.P50 <= DispatchP50Target && d.P99 <= DispatchP99Target ? "meets" : "MISSES";
            Console.WriteLine($"  {name,-30} {Ms(d.P50),9} {Ms(d.P95),9} {Ms(d.P99),9} {Ms(d.Max),9} {Ms(d.Mean),9}   " +
                              $"{Ms(r.EndToEnd.P50),17} {Ms(r.EndToEnd.P99),9}  {r.Failed,6} {r.Cpu.App,8:0.00} {r.Cpu.Server,7:0.00}  {verdict}");
        }
    }

    public void Approvals(ApprovalResult local, ApprovalResult remote)
    {
        const double p50Target = 10;
        const double p99Target = 50;
        Console.WriteLine($"APPROVALS  ApproveToolCallAsync returned (committed) -> the continuation's request at the fake Claude; {local.Latency.Count} " +
                          $"runs per row after {options.Warmup} warm-up,");
        Console.WriteLine("           one at a time, each in its own session: the model asks for a tool that needs approval, the run waits in " +
                          "pending_tools, the decision lets the tool run and the run continue");
        Console.WriteLine($"  {"decided by",-30} {"p50",9} {"p95",9} {"p99",9} {"max",9} {"mean",9}  {"failed",6} target");
        Row("the worker's client", local);
        Row("another client (NOTIFY)", remote);
        Console.WriteLine($"  {"target",-30} {"<=" + p50Target.ToString("0.00", CultureInfo.InvariantCulture) + "ms",9} {"",9} " +
                          $"{"<=" + p99Target.ToString("0.00", CultureInfo.InvariantCulture) + "ms",9}");
        Console.WriteLine();

        static void Row(string name, ApprovalResult r)
        {
            var d = r.Latency;
            var verdict = d.P50 <= p50Target && d.P99 <= p99Target ? "meets" : "MISSES";
            Console.WriteLine($"  {name,-30} {d.P50,7:0.00}ms {d.P95,7:0.00}ms {d.P99,7:0.00}ms {d.Max,7:0.00}ms {d.Mean,7:0.00}ms  {r.Failed,6} {verdict}");
        }
    }

    public void Throughput(ThroughputResult? closedLoop, ThroughputResult? drain, PgbenchResult? pgbench)
    {
        if (closedLoop is null && pgbench is null)
        {
            return;
        }

        Console.WriteLine("THROUGHPUT  single-iteration streaming runs (one text reply, no tools), zero-latency model");
        Console.WriteLine("  per run: write transactions (xids), WAL bytes, client round trips, CPU ms of the client process (AgentPg + fake " +
                          "Claude, or pgbench) and of PostgreSQL, KB allocated by this process (AgentPg + fake Claude + harness)");
        Console.WriteLine($"  {"what",-44} {"runs",8} {"s",6} {"runs/s",9} {"e2e p50",9} {"e2e p99",9} {"failed",6} {"xacts",6} {"WAL B",7} {"trips",6} {"cpu app",8} {"cpu db",7} {"alloc KB",8}");
        if (closedLoop is not null)
        {
            Row($"AgentPg closed loop: {closedLoop.Producers} sessions, slots {closedLoop.MaxConcurrentStreamingRuns}", closedLoop);
        }

        if (drain is not null)
        {
            Row($"AgentPg drain of a backlog: slots {drain.MaxConcurrentStreamingRuns}", drain);
        }

        if (pgbench is not null)
        {
            var c = pgbench.Cost;
            Console.WriteLine($"  {$"pgbench minimal lifecycle: -c {pgbench.Clients} -j {pgbench.Clients} -T {pgbench.Seconds}",-44} {pgbench.Runs,8} " +
                              $"{pgbench.Seconds,6} {pgbench.Tps,9:0.0} {"-",9} {"-",9} {0,6} {c.WriteTransactions,6:0.00} {c.WalBytes,7:0} {c.RoundTrips,6:0.0} " +
                              $"{c.Cpu.Children,8:0.00} {c.Cpu.Server,7:0.00} {"-",8}");
            if (pgbench.PendingLeft == 0)
            {
                Console.WriteLine("  !! pgbench used up its backlog of pending runs: its figure is a lower bound");
            }
        }

        if (closedLoop is not null && pgbench is not null)
        {
            var ratio = closedLoop.RunsPerSecond / pgbench.Tps;
            Console.WriteLine();
            Console.WriteLine($"  ratio AgentPg closed loop / pgbench = {ratio:0.000}   (target >= {ThroughputRatioTarget:0.0}: " +
                              $"{(ratio >= ThroughputRatioTarget ? "meets" : "MISSES")})");
            if (drain is not null)
            {
                Console.WriteLine($"  ratio AgentPg drain       / pgbench = {drain.RunsPerSecond / pgbench.Tps:0.000}   (same scope as the script: no run creation)");
            }
        }

        if (closedLoop is { ReusedSessions: true })
        {
            Console.WriteLine("  note: the closed loop ran out of fresh sessions and reused some (their requests carry earlier turns)");
        }

        static void Row(string name, ThroughputResult r)
        {
            static string Ms(double value) => double.IsNaN(value) ? "-" : $"{value:0.0}ms";
            var c = r.Cost;
            Console.WriteLine($"  {name,-44} {r.Runs,8} {r.Seconds,6:0.0} {r.RunsPerSecond,9:0.0} {Ms(r.EndToEnd.P50),9} {Ms(r.EndToEnd.P99),9} " +
                              $"{r.Failed,6} {c.WriteTransactions,6:0.00} {c.WalBytes,7:0} {c.RoundTrips,6:0.0} {c.Cpu.App,8:0.00} {c.Cpu.Server,7:0.00} " +
                              $"{c.Cpu.AppAllocatedBytes / 1024,8:0.0}");
        }
    }
}
