using System.Globalization;

namespace AgentPg.Benchmarks;

/// <summary>Command-line options of the benchmark harness.</summary>
internal sealed class BenchOptions
{
    public const string Usage = """
        usage: AgentPg.Benchmarks [--runs N] [--seconds S] [--only PHASE] [--concurrency C] [--warmup N] [--turns N]
                                  [--streams N] [--workers N] [--breakdown] [--keep] [--smoke]

          --runs N         measured runs per dispatch and approvals scenario (default 1000; at least 1000 for the
                           target figure)
          --seconds S      measured seconds of the throughput phase and of pgbench (default 20)
          --only PHASE     run one phase: dispatch, throughput, pgbench, tools, concurrency, scaleout, events, approvals,
                           long or admin (default: all; long only when named or with --turns; admin only when named).
                           events: live-event delta latency to a watcher on another client, and 1 000 concurrent
                           watchers on one instance. concurrency: --streams slow streaming runs at once on one instance
                           with a pool of 20. tools: runs of 3 iterations with 5 parallel tool calls in the first two.
                           scaleout: --workers worker processes draining a backlog, against 1 process
          --streams N      runs started at once in the concurrency phase, and its MaxConcurrentStreamingRuns
                           (default 1000)
          --workers N      worker processes of the scale-out phase (default 3)
          --admin-runs N   runs seeded for the admin phase (default 1000000; 10 messages each)
          --turns N        turns of the long-session phase (default 1000): one session, one tool call per turn,
                           auto-compaction and prompt caching on
          --concurrency C  parallel sessions in the throughput phase, MaxConcurrentStreamingRuns there, and pgbench
                           -c/-j (default 32)
          --warmup N       unmeasured warm-up runs before each measured phase (default 200)
          --breakdown      also cut each dispatched run into segments (database round trips, HTTP) and print them
          --keep           keep the benchmark schemas afterwards (for inspection)
          --smoke          every phase (long and admin included) with tiny counts, in about 10 s of measurement: a check
                           that the harness works, not a measurement; exits non-zero when any run failed or a phase
                           threw (./build.sh test runs it)

        The exit code is 1 when a phase failed (an exception, a failed run or a violated invariant), 0 otherwise.

        The database comes from AGENTPG_CONNECTION; pgbench from AGENTPG_PG_BIN (both exported by eng/pg.sh, which
        `./build.sh bench` uses to start a throwaway cluster with stock settings).
        """;

    public int Runs { get; private set; } = 1000;

    public int Seconds { get; private set; } = 20;

    public int Concurrency { get; private set; } = 32;

    public int Warmup { get; private set; } = 200;

    public bool Keep { get; private set; }

    public bool Breakdown { get; private set; }

    public string? Only { get; private set; }

    public int Turns { get; private set; } = 1000;

    public int AdminRuns { get; private set; } = 1_000_000;

    public int Streams { get; private set; } = 1000;

    public int Workers { get; private set; } = 3;

    /// <summary>Tiny counts everywhere (see <see cref="Usage"/>).</summary>
    public bool Smoke { get; private set; }

    private bool _turnsGiven;

    public bool Includes(string phase) => phase switch
    {
        "long" => Only == "long" || (Only is null && (_turnsGiven || Smoke)),
        "admin" => Only == "admin" || (Only is null && Smoke),
        _ => Only is null || Only == phase,
    };

    public static BenchOptions Parse(string[] args)
    {
        var options = new BenchOptions();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--runs":
                    options.Runs = PositiveInt(args, ref i);
                    break;
                case "--seconds":
                    options.Seconds = PositiveInt(args, ref i);
                    break;
                case "--concurrency":
                    options.Concurrency = PositiveInt(args, ref i);
                    break;
                case "--warmup":
                    options.Warmup = int.Parse(Value(args, ref i), NumberStyles.None, CultureInfo.InvariantCulture);
                    break;
                case "--only":
                    var phase = Value(args, ref i);
                    if (phase is not ("dispatch" or "throughput" or "pgbench" or "tools" or "concurrency" or "scaleout" or "events" or "long"
                        or "approvals" or "admin"))
                    {
                        throw new ArgumentException("--only takes dispatch, throughput, pgbench, tools, concurrency, scaleout, events, approvals, " +
                                                    $"long or admin, not '{phase}'.");
                    }

                    options.Only = phase;
                    break;
                case "--admin-runs":
                    options.AdminRuns = PositiveInt(args, ref i);
                    break;
                case "--turns":
                    options.Turns = PositiveInt(args, ref i);
                    options._turnsGiven = true;
                    break;
                case "--streams":
                    options.Streams = PositiveInt(args, ref i);
                    break;
                case "--workers":
                    options.Workers = PositiveInt(args, ref i);
                    break;
                case "--smoke":
                    options.Smoke = true;
                    break;
                case "--breakdown":
                    options.Breakdown = true;
                    break;
                case "--keep":
                    options.Keep = true;
                    break;
                case "-h" or "--help":
                    throw new ArgumentException("");
                default:
                    throw new ArgumentException($"Unknown argument '{args[i]}'.");
            }
        }

        if (options.Smoke)
        {
            // Tiny counts, unless given explicitly: the point is that every phase runs end to end.
            options.Runs = Math.Min(options.Runs, 20);
            options.Seconds = Math.Min(options.Seconds, 1);
            options.Warmup = Math.Min(options.Warmup, 5);
            options.Concurrency = Math.Min(options.Concurrency, 8);
            options.Turns = Math.Min(options.Turns, 6);
            options.AdminRuns = Math.Min(options.AdminRuns, 3000);
            options.Streams = Math.Min(options.Streams, 40);
            options.Workers = Math.Min(options.Workers, 2);
        }

        return options;
    }

    private static string Value(string[] args, ref int i)
    {
        if (i + 1 >= args.Length)
        {
            throw new ArgumentException($"{args[i]} needs a value.");
        }

        return args[++i];
    }

    private static int PositiveInt(string[] args, ref int i)
    {
        var name = args[i];
        var text = Value(args, ref i);
        if (!int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) || value <= 0)
        {
            throw new ArgumentException($"{name} takes a positive integer, not '{text}'.");
        }

        return value;
    }
}
