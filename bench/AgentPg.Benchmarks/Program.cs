using System.Globalization;
using AgentPg.Benchmarks;

// AgentPg benchmarks (docs/architecture.md, "Performance targets"): dispatch latency, streaming-run throughput, the pgbench yardstick and the
// approval-to-continuation latency, in one
// process run against the same database. `./build.sh bench [args]` runs this in Release on a throwaway cluster.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

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

try
{
    ThroughputResult? closedLoop = null;
    ThroughputResult? drain = null;
    PgbenchResult? pgbench = null;
    if (options.Includes("throughput"))
    {
        report.Progress($"throughput: closed loop, {options.Concurrency} producers, {options.Seconds} s …");
        closedLoop = await ThroughputBenchmark.RunClosedLoopAsync(env, options, counters);
        var backlog = (int)Math.Clamp(closedLoop.RunsPerSecond * options.Seconds, 2_000, 100_000);
        report.Progress($"throughput: drain of {backlog} pending runs …");
        drain = await ThroughputBenchmark.RunDrainAsync(env, options, counters, backlog);
    }

    if (options.Includes("pgbench"))
    {
        report.Progress($"pgbench: minimal lifecycle, {options.Concurrency} clients, {options.Seconds} s …");
        pgbench = await PgbenchBaseline.RunAsync(env, options, counters);
    }

    report.Throughput(closedLoop, drain, pgbench);

    // Last: latency is a property of a running service, so it is measured once the throughput phases have taken the
    // process through JIT tiering (a cold process spends a core on the tiered compiler during the first ~20 s).
    if (options.Includes("dispatch"))
    {
        report.Progress("dispatch: same client …");
        var local = await DispatchBenchmark.RunAsync(env, options, viaNotify: false);
        report.Progress("dispatch: other client (NOTIFY) …");
        var remote = await DispatchBenchmark.RunAsync(env, options, viaNotify: true);
        report.Dispatch(local, remote);
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
finally
{
    if (!options.Keep)
    {
        await env.DropAsync();
    }
}

return 0;
