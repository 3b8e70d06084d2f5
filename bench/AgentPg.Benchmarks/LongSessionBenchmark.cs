using AgentPg.Testing;
using Npgsql;

namespace AgentPg.Benchmarks;

/// <summary>
/// One session, N turns, each a prompt, one tool call with an 800-character output and a short answer, against a
/// zero-latency fake Claude with its prompt cache on (1 024-token minimum, as the real API), auto-compaction on and a
/// 40 000-token window, so the session is compacted many times. Reports, per bucket of turns: PostgreSQL CPU per iteration,
/// input tokens sent per iteration (uncached + cache read + cache write) and the share read from the cache.
/// </summary>
/// <remarks>Targets (issue: long conversations): database time per iteration at the last bucket within 1.2× of the first;
/// input tokens bounded by the trigger; cache reads ≥ 85 % of input tokens from turn 3 on, the iteration right after a
/// compaction excepted.</remarks>
internal static class LongSessionBenchmark
{
    private const int Window = 40_000;
    private const int Bucket = 10;

    public sealed record Result(int Turns, int Iterations, int Compactions, long TriggerTokens, long LargestPrompt, IReadOnlyList<BucketFigures> Buckets,
        double CacheShareFromTurn3, double CacheShareFromTurn3ExceptAfterCompaction, TimeSpan Elapsed);

    public sealed record BucketFigures(int FirstTurn, int LastTurn, double DbCpuMsPerIteration, double InputTokensPerIteration, double CacheReadShare);

    public static async Task<Result> RunAsync(BenchEnvironment env, BenchOptions options)
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
        {
            RecordRequests = false,
            StreamChunkSize = 64,
            ContextWindow = Window,
            Responder = request =>
            {
                if (request.SystemText.StartsWith("You summarise conversations", StringComparison.Ordinal))
                {
                    return FakeReply.Text("Summary: the user asked for pages and got them; each answer quoted the page number. " + new string('s', 600));
                }

                return request.ToolResults.Count == 0
                    ? FakeReply.ToolUse("fetch_page", new { n = request.LastUserText.Length })
                    : FakeReply.Text("Here is what the page says, in short: it is page " + request.ToolResults[0].Content[..12] + ".");
            },
        });
        var compaction = new CompactionOptions { MaxTokensForModel = Window, ProtectedTokens = 8_000, PreserveLastN = 10, TargetTokens = 16_000 };
        await using var client = AgentPgClient.Create(env.DataSource, new AgentPgOptions
        {
            Schema = BenchEnvironment.Schema,
            ApiKey = claude.ApiKey,
            BaseUrl = claude.BaseUrl,
            InstanceName = "bench-long",
            AutoCompaction = true,
            Compaction = compaction,
        });
        client.RegisterTool(FunctionTool.Create("fetch_page", "Fetches a page of the manual.", (int n) => $"page {n:D6}: " + new string('p', 800)));
        await client.StartAsync();
        var agent = await client.CreateAgentAsync(new AgentDefinition
        {
            Name = "bench_long_" + Guid.NewGuid().ToString("N")[..8],
            Model = "claude-sonnet-4-5",
            // A system prompt past the cache minimum, as real agents have.
            SystemPrompt = "You are a careful research assistant. " + string.Concat(Enumerable.Repeat("Always cite the page you used. ", 160)),
            MaxTokens = 1024,
            Tools = ["fetch_page"],
        });
        var session = await client.NewSessionAsync();
        var meter = new CpuMeter();
        var cpu = new double[options.Turns + 1];
        var started = DateTimeOffset.UtcNow;
        cpu[0] = meter.Take().Server;
        for (var turn = 1; turn <= options.Turns; turn++)
        {
            await client.RunFastSyncAsync(session, agent.Id, $"Turn {turn}: fetch the next page and tell me what it says.");
            cpu[turn] = meter.Take().Server;
        }

        var elapsed = DateTimeOffset.UtcNow - started;
        var iterations = await ReadIterationsAsync(env, session);
        var compactions = await client.GetCompactionEventsAsync(session, 1000);
        var afterCompaction = compactions
            .Select(e => iterations.FirstOrDefault(i => i.StartedAt > e.CreatedAt))
            .Where(i => i is not null).Select(i => i!.Id).ToHashSet();

        var buckets = new List<BucketFigures>();
        foreach (var first in new[] { 1, options.Turns / 2 - Bucket + 1, options.Turns - Bucket + 1 }.Where(t => t >= 1).Distinct())
        {
            var last = Math.Min(first + Bucket - 1, options.Turns);
            var inBucket = iterations.Where(i => i.Turn >= first && i.Turn <= last).ToList();
            var input = inBucket.Sum(i => i.Prompt);
            buckets.Add(new BucketFigures(first, last, (cpu[last] - cpu[first - 1]) / Math.Max(1, inBucket.Count),
                (double)input / Math.Max(1, inBucket.Count), input == 0 ? 0 : (double)inBucket.Sum(i => i.CacheRead) / input));
        }

        var fromTurn3 = iterations.Where(i => i.Turn >= 3).ToList();
        var exceptAfter = fromTurn3.Where(i => !afterCompaction.Contains(i.Id)).ToList();
        return new Result(options.Turns, iterations.Count, compactions.Count, compaction.TriggerTokens, iterations.Max(i => i.Prompt), buckets,
            Share(fromTurn3), Share(exceptAfter), elapsed);

        static double Share(List<IterationRow> rows) => rows.Sum(i => i.Prompt) is var input and > 0 ? (double)rows.Sum(i => i.CacheRead) / input : 0;
    }

    public static void Print(Result r)
    {
        Console.WriteLine();
        Console.WriteLine($"LONG SESSION  {r.Turns} turns (one tool call each), {r.Iterations} iterations, {r.Compactions} compactions, {r.Elapsed.TotalSeconds:F0} s; " +
                          $"window {Window}, trigger {r.TriggerTokens} tokens");
        Console.WriteLine("  turns           db cpu ms/iteration   input tokens/iteration   cache-read share");
        foreach (var b in r.Buckets)
        {
            Console.WriteLine($"  {b.FirstTurn,5}-{b.LastTurn,-5}     {b.DbCpuMsPerIteration,12:F2}          {b.InputTokensPerIteration,12:F0}            {b.CacheReadShare,8:P1}");
        }

        var first = r.Buckets[0].DbCpuMsPerIteration;
        var last = r.Buckets[^1].DbCpuMsPerIteration;
        Console.WriteLine($"  db cpu last/first bucket = {(first > 0 ? last / first : double.NaN):F2}   (target <= 1.2)");
        Console.WriteLine($"  largest prompt = {r.LargestPrompt} tokens   (target: bounded by the trigger, {r.TriggerTokens})");
        Console.WriteLine($"  cache-read share of input tokens from turn 3: {r.CacheShareFromTurn3:P1}; " +
                          $"outside the iteration right after a compaction: {r.CacheShareFromTurn3ExceptAfterCompaction:P1}   (target >= 85 %)");
    }

    private sealed record IterationRow(Guid Id, int Turn, long Prompt, long CacheRead, DateTimeOffset StartedAt);

    private static async Task<List<IterationRow>> ReadIterationsAsync(BenchEnvironment env, Guid session)
    {
        await using var command = env.DataSource.CreateCommand($"""
            SELECT i.id, dense_rank() OVER (ORDER BY r.created_at, r.id)::int,
                   i.input_tokens::bigint + i.cache_read_input_tokens + i.cache_creation_input_tokens,
                   i.cache_read_input_tokens::bigint, coalesce(i.started_at, i.created_at)
              FROM {BenchEnvironment.Schema}.agentpg_iterations i
              JOIN {BenchEnvironment.Schema}.agentpg_runs r ON r.id = i.run_id
             WHERE r.session_id = $1 AND r.depth = 0
             ORDER BY r.created_at, r.id, i.iteration_number
            """);
        command.Parameters.Add(new NpgsqlParameter<Guid> { TypedValue = session });
        var rows = new List<IterationRow>();
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            rows.Add(new IterationRow(reader.GetGuid(0), reader.GetInt32(1), reader.GetInt64(2), reader.GetInt64(3), reader.GetFieldValue<DateTimeOffset>(4)));
        }

        return rows;
    }
}
