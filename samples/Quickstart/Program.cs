// AgentPg quick start: migrate the schema, register two tools, create an agent and a session, start this process as a
// worker instance and make one run, printing the tool calls as they happen and the result afterwards.
//
//   ./build.sh quickstart [--batch] ["prompt"]                       a throwaway PostgreSQL, then this program
//   dotnet run --project samples/Quickstart [-- --batch] [-- "prompt"]  the database in AGENTPG_CONNECTION
//
// --batch uses the Message Batches API (half the price; minutes to hours with the real Claude) instead of streaming.
//
// With ANTHROPIC_API_KEY set it talks to Claude; without it, to the bundled fake Claude (FakeClaudeServer's demo model).

using AgentPg;
using AgentPg.Testing;
using Microsoft.Extensions.Logging;
using Npgsql;

var batch = args.Contains("--batch");
args = [.. args.Where(a => a != "--batch")];
if (args.Any(a => a.StartsWith('-')))
{
    Console.Error.WriteLine("usage: Quickstart [--batch] [prompt]");
    return 2;
}

var prompt = args.Length > 0 ? string.Join(' ', args) : "What's the weather in Paris, and what is 17 * 23?";
var connectionString = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION") is { Length: > 0 } configured
    ? configured
    : "Host=127.0.0.1;Username=postgres;Database=postgres";

using var loggerFactory = LoggerFactory.Create(logging => logging
    .AddSimpleConsole(console => console.SingleLine = true)
    .SetMinimumLevel(LogLevel.Warning));
await using var dataSource = NpgsqlDataSource.Create(connectionString);
await using var fakeClaude = string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY"))
    ? await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = FakeModels.Demo })
    : null;
// A batch can take hours at the real API (it is guaranteed within 24); streaming answers in seconds.
var limit = batch && fakeClaude is null ? TimeSpan.FromHours(24) : TimeSpan.FromMinutes(2);
using var timeout = new CancellationTokenSource(limit);

try
{
    // The schema: idempotent, and safe to run from every instance at startup (an advisory lock serialises them).
    var version = await new AgentPgMigrator(dataSource).MigrateAsync(cancellationToken: timeout.Token);
    var database = new NpgsqlConnectionStringBuilder(connectionString);
    Console.WriteLine($"PostgreSQL  {database.Host}:{database.Port}/{database.Database}, schema \"public\" at version {version}");

    var options = new AgentPgOptions { LoggerFactory = loggerFactory };
    if (fakeClaude is null)
    {
        Console.WriteLine("Claude      the Claude API (ANTHROPIC_API_KEY is set)");
    }
    else
    {
        options.BaseUrl = fakeClaude.BaseUrl;
        options.ApiKey = fakeClaude.ApiKey;
        // The fake answers batches within milliseconds; Claude takes minutes, which the 30-second default suits.
        options.BatchPollInterval = TimeSpan.FromMilliseconds(250);
        Console.WriteLine($"Claude      fake: FakeClaudeServer's demo model at {fakeClaude.BaseUrl} (set ANTHROPIC_API_KEY for Claude)");
    }

    await using var client = AgentPgClient.Create(dataSource, options);
    client.RegisterTool(Tools.Weather);
    client.RegisterTool(Tools.Calculator);

    // Agents are stored in the database and shared by every instance; GetOrCreate makes this safe on every start.
    var agent = await client.GetOrCreateAgentAsync(new AgentDefinition
    {
        Name = "quickstart",
        Model = "claude-sonnet-4-5",
        SystemPrompt = "You are a concise assistant. Use the tools for weather and arithmetic.",
        Tools = ["get_weather", "calculate"],
    }, timeout.Token);
    var sessionId = await client.NewSessionAsync(cancellationToken: timeout.Token);

    // Starting makes this process a worker: it claims runs, calls Claude and executes tools. A client that is never
    // started can still create runs and wait for them (another instance does the work).
    await client.StartAsync(timeout.Token);
    Console.WriteLine($"Agent       {agent.Name} ({agent.Model}) with tools {string.Join(", ", agent.Tools!)}");

    Console.WriteLine();
    Console.WriteLine($"> {prompt}{(batch ? "   (batch mode: Message Batches API)" : "")}");
    var runOptions = new RunOptions
    {
        // Called on a worker thread while the run is in progress.
        OnToolStart = e => Console.WriteLine($"  [tool] {e.ToolName} {e.ToolInput.GetRawText()}"),
        OnToolComplete = e => Console.WriteLine($"  [tool] {e.ToolName} done in {e.Duration.TotalMilliseconds:0} ms"),
    };
    var response = batch
        ? await client.RunSyncAsync(sessionId, agent.Id, prompt, runOptions, timeout.Token)
        : await client.RunFastSyncAsync(sessionId, agent.Id, prompt, runOptions, timeout.Token);

    Console.WriteLine();
    Console.WriteLine("Tool calls");
    foreach (var call in response.ToolCalls)
    {
        var result = call.IsError ? $"error: {call.ErrorMessage}" : call.Output;
        Console.WriteLine($"  {call.Name}({call.Input.GetRawText()}) = {result}");
    }

    Console.WriteLine();
    Console.WriteLine("Answer");
    Console.WriteLine($"  {response.Text}");

    Console.WriteLine();
    Console.WriteLine($"Iterations  {response.IterationCount} model calls, {response.ToolIterations} asked for tools; stop reason {response.StopReason}");
    Console.WriteLine($"Usage       {Tokens(response.Usage)} (TotalUsage, with delegated agents' runs: {Tokens(response.TotalUsage)})");

    // Everything the run did is in PostgreSQL: the conversation survives restarts and any instance can continue it.
    var messages = await client.GetMessagesAsync(sessionId, timeout.Token);
    Console.WriteLine($"Stored      session {sessionId} holds {messages.Count} messages: " +
                      string.Join(" → ", messages.Select(m => $"{m.Role.ToString().ToLowerInvariant()} [{string.Join(", ", m.Content.Select(b => b.Type))}]")));

    // Graceful shutdown: stop claiming, finish or release in-flight work, deregister the instance.
    await client.StopAsync(timeout.Token);
    return 0;
}
catch (OperationCanceledException) when (timeout.IsCancellationRequested)
{
    Console.Error.WriteLine($"quickstart failed: no result within {limit}.");
    return 1;
}
catch (NpgsqlException ex)
{
    Console.Error.WriteLine($"quickstart failed: PostgreSQL error: {ex.Message}");
    Console.Error.WriteLine("Is PostgreSQL running? Set AGENTPG_CONNECTION, or use ./build.sh quickstart for a throwaway database.");
    return 1;
}
catch (AgentPgException ex)
{
    Console.Error.WriteLine($"quickstart failed: {ex.Code}: {ex.Message}");
    return 1;
}

static string Tokens(Usage usage) => $"{usage.InputTokens} input + {usage.OutputTokens} output tokens";
