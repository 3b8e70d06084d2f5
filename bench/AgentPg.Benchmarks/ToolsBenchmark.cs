using AgentPg.Testing;

namespace AgentPg.Benchmarks;

/// <summary>Throughput of tool-heavy runs: three iterations, the first two asking for five tool calls at once.</summary>
/// <remarks>
/// The throughput phase's closed loop (<c>--concurrency</c> producers, each run in a fresh session, runs/s end to end),
/// with a zero-latency model scripted per request: while the conversation holds fewer than two assistant turns it
/// answers with five <c>tool_use</c> blocks (stop reason <c>tool_use</c>), then with one text block. The five tools are
/// plain <see cref="ITool"/>s that return at once, so every run is three model calls, ten tool executions and their
/// results, and the per-run figures show what the tool path costs next to the text path.
/// </remarks>
internal static class ToolsBenchmark
{
    public const int ToolsPerIteration = 5;
    public const int Iterations = 3;

    public static async Task<ThroughputResult> RunAsync(BenchEnvironment env, BenchOptions options, DbCounters counters)
    {
        var names = Enumerable.Range(1, ToolsPerIteration).Select(i => $"bench_tool_{i}").ToArray();
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
        {
            RecordRequests = false,
            StreamChunkSize = 64,
            Responder = request =>
            {
                var assistantTurns = request.Messages.EnumerateArray().Count(m => m.GetProperty("role").GetString() == "assistant");
                return assistantTurns < Iterations - 1
                    ? FakeReply.Message([.. names.Select((n, i) => FakeContentBlock.ToolUse(n, new { city = "city " + i }))])
                    : FakeReply.Text(BenchEnvironment.Reply);
            },
        });
        var tools = names.Select(n => (ITool)FunctionTool.Create(n, "Looks up the weather of a city.", (string city) => "sunny in " + city)).ToArray();
        var shape = new ClosedLoopShape(claude, tools, client => client.CreateAgentAsync(new AgentDefinition
        {
            Name = "bench_tools_" + Guid.NewGuid().ToString("N")[..8],
            Model = "claude-sonnet-4-5",
            SystemPrompt = "You are a helpful assistant.",
            MaxTokens = 1024,
            Tools = names,
        }));
        return await ThroughputBenchmark.RunClosedLoopAsync(env, options, counters, shape);
    }

    public static void Print(ThroughputResult r)
    {
        static string Ms(double value) => double.IsNaN(value) ? "-" : $"{value:0.0}ms";
        var c = r.Cost;
        Console.WriteLine();
        Console.WriteLine($"TOOLS  runs of {Iterations} iterations, {ToolsPerIteration} parallel tool calls (plain tools that return at once) in each of " +
                          $"the first {Iterations - 1}, zero-latency model;");
        Console.WriteLine($"       closed loop as in THROUGHPUT; per run: {Iterations} model calls, {ToolsPerIteration * (Iterations - 1)} tool executions");
        Console.WriteLine($"  {"what",-44} {"runs",8} {"s",6} {"runs/s",9} {"e2e p50",9} {"e2e p99",9} {"failed",6} {"xacts",6} {"WAL B",7} {"trips",6} {"cpu app",8} {"cpu db",7}");
        Console.WriteLine($"  {$"AgentPg closed loop: {r.Producers} sessions, slots {r.MaxConcurrentStreamingRuns}",-44} {r.Runs,8} {r.Seconds,6:0.0} " +
                          $"{r.RunsPerSecond,9:0.0} {Ms(r.EndToEnd.P50),9} {Ms(r.EndToEnd.P99),9} {r.Failed,6} {c.WriteTransactions,6:0.00} {c.WalBytes,7:0} " +
                          $"{c.RoundTrips,6:0.0} {c.Cpu.App,8:0.00} {c.Cpu.Server,7:0.00}");
    }
}
