using System.Globalization;
using AgentPg.Benchmarks;

// AgentPg benchmarks (docs/architecture.md, "Performance targets"): dispatch latency, streaming-run throughput, the pgbench yardstick,
// tool-heavy runs, 1 000 concurrent streams on one instance, worker processes scaling out, live events, approvals, in one
// process run against the same database (README.md). `./build.sh bench [args]` runs this in Release on a throwaway cluster.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

if (args is ["worker", ..])
{
    // A worker process of the scale-out phase (ScaleOutBenchmark starts this executable so).
    return await ScaleOutWorker.RunAsync(args[1..]);
}

BenchOptions options;
try
{
    options = BenchOptions.Parse(args);
}
catch (ArgumentException ex)
{
    if (ex.Message.Length > 0)
    {
        Console.Error.WriteLine(ex.Message);
    }

    Console.Error.WriteLine(BenchOptions.Usage);
    return 2;
}

var connectionString = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION");
if (string.IsNullOrEmpty(connectionString))
{
    Console.Error.WriteLine("AGENTPG_CONNECTION is not set. Run `./build.sh bench`, which starts a throwaway PostgreSQL and sets it.");
    return 2;
}

await using var env = await BenchEnvironment.StartAsync(connectionString, poolSize: options.Concurrency * 2 + 20);
using var counters = new DbCounters();
var report = new Report(options, env.ServerVersion);
report.Header();
var failures = new List<string>();

try
{
    ThroughputResult? closedLoop = null;
    ThroughputResult? drain = null;
    PgbenchResult? pgbench = null;
    if (options.Includes("throughput"))
    {
        report.Progress($"throughput: closed loop, {options.Concurrency} producers, {options.Seconds} s …");
        closedLoop = await ThroughputBenchmark.RunClosedLoopAsync(env, options, counters);
        var backlog = options.Smoke ? 50 : (int)Math.Clamp(closedLoop.RunsPerSecond * options.Seconds, 2_000, 100_000);
        report.Progress($"throughput: drain of {backlog} pending runs …");
        drain = await ThroughputBenchmark.RunDrainAsync(env, options, counters, backlog);
    }

    if (options.Includes("pgbench"))
    {
        report.Progress($"pgbench: minimal lifecycle, {options.Concurrency} clients, {options.Seconds} s …");
        pgbench = await PgbenchBaseline.RunAsync(env, options, counters);
    }

    report.Throughput(closedLoop, drain, pgbench);
    if (closedLoop is { Failed: > 0 } || drain is { Failed: > 0 })
    {
        failures.Add($"throughput: {closedLoop?.Failed + drain?.Failed} runs failed");
    }

    if (options.Includes("tools"))
    {
        report.Progress($"tools: closed loop, {options.Concurrency} producers, 3 iterations with 5 parallel tool calls in the first two …");
        var tools = await ToolsBenchmark.RunAsync(env, options, counters);
        ToolsBenchmark.Print(tools);
        if (tools.Failed > 0)
        {
            failures.Add($"tools: {tools.Failed} runs failed");
        }
    }

    if (options.Includes("concurrency"))
    {
        report.Progress($"concurrency: {options.Streams} slow streaming runs at once, pool of {ConcurrencyBenchmark.PoolSize} …");
        if (!ConcurrencyBenchmark.Print(await ConcurrencyBenchmark.RunAsync(env, options)))
        {
            failures.Add("concurrency: not every run completed");
        }
    }

    if (options.Includes("scaleout"))
    {
        var scaleOut = await ScaleOutBenchmark.RunAsync(env, options, counters, report.Progress);
        ScaleOutBenchmark.Print(scaleOut);
        failures.AddRange(scaleOut.Problems.Select(p => "scaleout: " + p));
    }

    // Last: latency is a property of a running service, so it is measured once the throughput phases have taken the
    // process through JIT tiering (a cold process spends a core on the tiered compiler during the first ~20 s).
    if (options.Includes("dispatch"))
    {
        report.Progress("dispatch: same client …");
        var local = await DispatchBenchmark.RunAsync(env, options, viaNotify: false);
        report.Progress("dispatch: other client (NOTIFY) …");
        var remote = await DispatchBenchmark.RunAsync(env, options, viaNotify: true);
        report.Dispatch(local, remote);
        if (local.Failed + remote.Failed > 0)
        {
            failures.Add($"dispatch: {local.Failed + remote.Failed} runs failed");
        }
    }

    if (options.Includes("events"))
    {
        EventsBenchmark.Print(await EventsBenchmark.RunAsync(env, options, report.Progress));
    }

    if (options.Includes("approvals"))
    {
        report.Progress("approvals: decided by the worker's own client …");
        var localApprovals = await ApprovalBenchmark.RunAsync(env, options, viaNotify: false);
        report.Progress("approvals: decided by another client (NOTIFY) …");
        var remoteApprovals = await ApprovalBenchmark.RunAsync(env, options, viaNotify: true);
        report.Approvals(localApprovals, remoteApprovals);
        if (localApprovals.Failed + remoteApprovals.Failed > 0)
        {
            failures.Add($"approvals: {localApprovals.Failed + remoteApprovals.Failed} runs failed");
        }
    }

    if (options.Includes("long"))
    {
        report.Progress($"long session: {options.Turns} turns with auto-compaction …");
        var longSession = await LongSessionBenchmark.RunAsync(env, options);
        LongSessionBenchmark.Print(longSession);
    }

    if (options.Includes("admin"))
    {
        var admin = await AdminPagesBenchmark.RunAsync(env, options, report.Progress);
        AdminPagesBenchmark.Print(admin);
    }

    report.Footer();
}
catch (Exception ex)
{
    failures.Add(ex.ToString());
}
finally
{
    if (!options.Keep)
    {
        await env.DropAsync();
    }
}

if (failures.Count > 0)
{
    Console.WriteLine();
    foreach (var failure in failures)
    {
        Console.WriteLine("FAILED " + failure);
    }

    return 1;
}

return 0;
