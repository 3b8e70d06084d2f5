using System.Collections.Concurrent;
using System.Diagnostics;
using Npgsql;

namespace AgentPg.Benchmarks;

/// <summary>Where the time of one dispatched run goes (<c>--breakdown</c>): timestamps of AgentPg's database round trips
/// (Npgsql's tracing spans, named by <see cref="Label(string)"/>) and of the SDK's HTTP request (System.Net.Http's span),
/// recorded by an <see cref="ActivityListener"/> and cut into segments between RunFastAsync returning and the request
/// arriving, then the completion.</summary>
/// <remarks>Runs are dispatched one at a time, so every span between one run's creation and its completion belongs to it
/// (apart from rare background work: heartbeat, the tool worker's poll), which is why only the spans a run needs are picked.</remarks>
internal sealed class Breakdown : IDisposable
{
    public const string Claim = "claim";
    public const string StartIteration = "start iteration";
    public const string Complete = "complete";
    public const string CreateRun = "create run";
    public const string Http = "http";

    private static readonly string[] s_segments =
    [
        "wake: committed -> claim sent",
        "claim round trip",
        "claimed -> start-iteration sent",
        "start-iteration round trip (1 commit)",
        "build request + SDK -> HTTP sent",
        "HTTP sent -> request arrived",
        "request arrived -> complete sent (stream)",
        "complete round trip (1 commit + NOTIFY)",
        "complete returned -> NOTIFY seen by harness",
    ];

    private readonly ActivityListener _listener;
    private readonly ConcurrentQueue<Span> _spans = new();
    private readonly Dictionary<string, LatencySamples> _segments = s_segments.ToDictionary(s => s, _ => new LatencySamples());
    private int _incomplete;

    public Breakdown()
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name is "Npgsql" or "System.Net.Http",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllData,
            ActivityStarted = activity => activity.SetCustomProperty("bench.start", Stopwatch.GetTimestamp()),
            ActivityStopped = activity =>
            {
                var end = Stopwatch.GetTimestamp();
                if (activity.GetCustomProperty("bench.start") is long start)
                {
                    var name = activity.Source.Name == "System.Net.Http" ? Http : activity.DisplayName;
                    _spans.Enqueue(new Span(name, start, end));
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    /// <summary>The span name Npgsql gives a command or batch: what the statement does on the run path.</summary>
    public static string Label(string sql)
    {
        if (sql.Contains("agentpg_claim_runs", StringComparison.Ordinal))
        {
            return Claim;
        }

        // The first iteration is started by the claim; what follows it is the read of the agent and the conversation.
        if (sql.Contains($"INSERT INTO \"{BenchEnvironment.Schema}\".agentpg_iterations", StringComparison.Ordinal)
            || sql.Contains("set_config('enable_seqscan'", StringComparison.Ordinal))
        {
            return StartIteration;
        }

        if (sql.Contains("SET state = 'completed'", StringComparison.Ordinal))
        {
            return Complete;
        }

        if (sql.Contains($"INSERT INTO \"{BenchEnvironment.Schema}\".agentpg_runs", StringComparison.Ordinal))
        {
            return CreateRun;
        }

        return "other";
    }

    public static void Configure(NpgsqlDataSourceBuilder builder)
        => builder.ConfigureTracing(tracing => tracing
            .ConfigureCommandSpanNameProvider(command => Label(command.CommandText))
            .ConfigureBatchSpanNameProvider(batch => Label(string.Concat(batch.BatchCommands.Cast<NpgsqlBatchCommand>().Select(c => c.CommandText)))));

    /// <summary>Forgets spans recorded so far (call before creating the next run).</summary>
    public void Reset() => _spans.Clear();

    /// <summary>Cuts the spans recorded since <see cref="Reset"/> into segments for one run.</summary>
    /// <remarks>The harness can see the completion NOTIFY before the worker's span of the completing batch has ended, so
    /// this waits a moment for that span.</remarks>
    public async Task AddAsync(long committed, long arrived, long notified)
    {
        var deadline = Stopwatch.GetTimestamp() + Stopwatch.Frequency / 5;
        while (!_spans.Any(s => s.Name == Complete && s.Start >= arrived) && Stopwatch.GetTimestamp() < deadline)
        {
            await Task.Delay(1);
        }

        var spans = _spans.ToArray();
        var iteration = spans.Where(s => s.Name == StartIteration && s.Start >= committed).MinBy(s => s.Start);
        var claim = iteration is null ? null : spans.Where(s => s.Name == Claim && s.End <= iteration.Start).MaxBy(s => s.End);
        var http = iteration is null ? null : spans.Where(s => s.Name == Http && s.Start >= iteration.End).MinBy(s => s.Start);
        var complete = spans.Where(s => s.Name == Complete && s.Start >= arrived).MinBy(s => s.Start);
        if (iteration is null || claim is null || http is null || complete is null)
        {
            _incomplete++;
            return;
        }

        var points = new[] { committed, claim.Start, claim.End, iteration.Start, iteration.End, http.Start, arrived, complete.Start, complete.End, notified };
        for (var i = 0; i < s_segments.Length; i++)
        {
            _segments[s_segments[i]].Add(LatencySamples.Milliseconds(points[i], points[i + 1]));
        }
    }

    public void Print(string title)
    {
        Console.WriteLine($"  breakdown, {title} (ms; a negative wake means the worker claimed before RunFastAsync's caller resumed)");
        Console.WriteLine($"    {"segment",-46} {"p50",8} {"p95",8} {"p99",8} {"mean",8}");
        foreach (var name in s_segments)
        {
            var s = _segments[name].Summarize();
            Console.WriteLine($"    {name,-46} {s.P50,8:0.000} {s.P95,8:0.000} {s.P99,8:0.000} {s.Mean,8:0.000}");
        }

        if (_incomplete > 0)
        {
            Console.WriteLine($"    ({_incomplete} runs left out: a span was not recognised)");
        }
    }

    public void Dispose() => _listener.Dispose();

    private sealed record Span(string Name, long Start, long End);
}
