// A standalone AgentPg worker process on the .NET generic host: AddNpgsqlDataSource + AddAgentPg(...).AddWorker() with a
// few demo tools. The host starts the worker, and on SIGTERM/Ctrl+C stops it gracefully: in-flight work finishes within
// the host's shutdown timeout, or is released to the other instances.
//
//   dotnet WorkerHost.dll --connection "Host=...;Username=..." [--schema public] [--claude-url http://127.0.0.1:1234]
//                         [--api-key KEY] [--instance-id ID] [--heartbeat-ms N] [--instance-ttl-ms N] [--leader-ttl-ms N]
//                         [--rescue-interval-ms N] [--rescue-timeout-ms N] [--poll-ms N] [--batch-poll-ms N]
//                         [--max-streaming N] [--max-batch N] [--max-tools N] [--stop-timeout-ms N] [--log-level Warning]
//                         [--approval-timeout-ms N] [--auto-compaction WINDOW_TOKENS] [--tool-attempts N] [--tool-retry-jitter F]
//
// --auto-compaction turns on AgentPgOptions.AutoCompaction for a model window of WINDOW_TOKENS, with settings small enough
// for a short conversation to be summarised (the crash tests use it; a real service keeps the defaults).
//
// It prints "READY <instance id>" once started and "STOPPED <instance id>" after a graceful stop. The multi-process crash
// tests drive it; it is also a template for a dedicated worker service (a real one would bind its options from
// configuration: builder.Services.AddAgentPg(builder.Configuration.GetSection("AgentPg"))).
//
// Without --connection it runs as a demo (`./build.sh sample WorkerHost`): the database comes from AGENTPG_CONNECTION,
// the schema is migrated, Claude is the bundled fake unless ANTHROPIC_API_KEY is set, and next to the worker a producer —
// a second client that is never started, as a web app would be — creates runs and waits for the worker's answers, then
// the worker stops gracefully. Add --keep-running to keep the worker up after that (Ctrl+C stops it).

using System.Globalization;
using System.Text.Json;
using AgentPg;
using AgentPg.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

var keepRunning = args.Contains("--keep-running");
var settings = ParseArguments([.. args.Where(a => a != "--keep-running")]);
var demo = !settings.ContainsKey("connection");
var connectionString = settings.GetValueOrDefault("connection") ?? Environment.GetEnvironmentVariable("AGENTPG_CONNECTION");
if (string.IsNullOrEmpty(connectionString))
{
    Console.Error.WriteLine("usage: WorkerHost --connection <connection string> [options], or set AGENTPG_CONNECTION for the demo; " +
                            "see the header of Program.cs");
    return 2;
}

// The demo talks to the bundled fake Claude unless a real key (or another endpoint) is given.
await using var fakeClaude = demo && settings.GetValueOrDefault("claude-url") is null && settings.GetValueOrDefault("api-key") is null
                             && string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY"))
    ? await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = FakeModels.Demo })
    : null;

var schema = settings.GetValueOrDefault("schema", "public");
var builder = Host.CreateApplicationBuilder();
builder.Logging.ClearProviders()
    .AddSimpleConsole(o => o.SingleLine = true)
    .SetMinimumLevel(Enum.Parse<LogLevel>(settings.GetValueOrDefault("log-level", "Warning")));
// How long in-flight work may take to finish on SIGTERM before it is released to the other instances.
builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout =
    TimeSpan.FromMilliseconds(int.Parse(settings.GetValueOrDefault("stop-timeout-ms", "10000"), CultureInfo.InvariantCulture)));
builder.Services.AddNpgsqlDataSource(connectionString);
var agentPg = builder.Services.AddAgentPg(options =>
    {
        options.Schema = schema;
        options.ApiKey = fakeClaude?.ApiKey ?? settings.GetValueOrDefault("api-key") ?? Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY");
        options.BaseUrl = fakeClaude?.BaseUrl ?? settings.GetValueOrDefault("claude-url");
        options.MigrateOnStart = demo;
        options.InstanceId = settings.GetValueOrDefault("instance-id");
        Milliseconds("heartbeat-ms", v => options.HeartbeatInterval = v);
        Milliseconds("instance-ttl-ms", v => options.InstanceTtl = v);
        Milliseconds("leader-ttl-ms", v => options.LeaderTtl = v);
        Milliseconds("cleanup-interval-ms", v => options.CleanupInterval = v);
        Milliseconds("rescue-interval-ms", v => options.RunRescue.Interval = v);
        Milliseconds("rescue-timeout-ms", v => options.RunRescue.Timeout = v);
        Milliseconds("poll-ms", v => options.RunPollInterval = options.ToolPollInterval = v);
        Milliseconds("batch-poll-ms", v => options.BatchPollInterval = v);
        Number("max-streaming", v => options.MaxConcurrentStreamingRuns = v);
        Number("max-batch", v => options.MaxConcurrentRuns = v);
        Number("max-tools", v => options.MaxConcurrentTools = v);
        Number("max-rescue-attempts", v => options.RunRescue.MaxAttempts = v);
        Milliseconds("approval-timeout-ms", v => options.ApprovalTimeout = v);
        Number("tool-attempts", v => options.ToolRetry.MaxAttempts = v);
        if (settings.TryGetValue("tool-retry-jitter", out var jitter))
        {
            options.ToolRetry.Jitter = double.Parse(jitter, CultureInfo.InvariantCulture);
        }

        Number("auto-compaction", v =>
        {
            options.AutoCompaction = true;
            options.Compaction = new CompactionOptions
            {
                Strategy = CompactionStrategy.Summarization,
                MaxTokensForModel = v,
                Trigger = 0.8,
                TargetTokens = v / 4,
                ProtectedTokens = 100,
                PreserveLastN = 0,
                UseTokenCountingApi = false,
            };
        });
    })
    .AddWorker()
    .AddTool(new RecordEffectTool(schema))
    .AddTool(FunctionTool.Create("slow_echo", "Waits the given number of milliseconds, then echoes the text.",
        async (string text, int ms, CancellationToken cancellationToken) =>
        {
            await Task.Delay(ms, cancellationToken);
            return text;
        }));
if (demo)
{
    agentPg.AddTool(FunctionTool.Create("get_weather", "Gets the current weather for a city.",
            (string city) => $"{city}: 14 °C, light wind"))
        .AddAgent(new AgentDefinition
        {
            Name = "workerhost_demo",
            Model = "claude-sonnet-4-5",
            SystemPrompt = "You are a concise assistant. Use get_weather for weather questions.",
            Tools = ["get_weather"],
        });
}

using var host = builder.Build();
await host.StartAsync();
var instanceId = host.Services.GetRequiredService<AgentPgClient>().InstanceId;
Console.WriteLine($"READY {instanceId}");

if (demo)
{
    Console.WriteLine(fakeClaude is null ? "Claude: the Claude API" : $"Claude: FakeClaudeServer's demo model at {fakeClaude.BaseUrl} (set ANTHROPIC_API_KEY for Claude)");
    await RunProducerAsync(connectionString, schema);
    if (!keepRunning)
    {
        await host.StopAsync();
        Console.WriteLine($"STOPPED {instanceId}");
        return 0;
    }

    Console.WriteLine("The worker keeps running (--keep-running); Ctrl+C stops it.");
}

// Returns once SIGTERM or Ctrl+C stopped the host (the worker released or finished its work).
await host.WaitForShutdownAsync();
Console.WriteLine($"STOPPED {instanceId}");
return 0;

// A producer: its own data source and a client that is never started, like a web app that creates runs. It shares
// nothing with the worker but the database: the worker claims the runs, and the producer's wait wakes on their NOTIFY.
static async Task RunProducerAsync(string connectionString, string schema)
{
    await using var dataSource = NpgsqlDataSource.Create(connectionString);
    await using var producer = AgentPgClient.Create(dataSource, new AgentPgOptions { Schema = schema });
    var agent = await producer.GetAgentByNameAsync("workerhost_demo");
    foreach (var prompt in new[] { "What's the weather in Oslo?", "What's the weather in Lisbon?" })
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
        var runId = await producer.RunFastAsync(await producer.NewSessionAsync(cancellationToken: timeout.Token), agent.Id, prompt,
            cancellationToken: timeout.Token);
        Console.WriteLine($"producer  created run {runId}: {prompt}");
        var response = await producer.WaitForRunAsync(runId, timeout.Token);
        Console.WriteLine($"worker    answered after {response.IterationCount} model calls: {response.Text}");
    }
}

void Milliseconds(string name, Action<TimeSpan> set)
{
    if (settings.TryGetValue(name, out var value))
    {
        set(TimeSpan.FromMilliseconds(int.Parse(value, CultureInfo.InvariantCulture)));
    }
}

void Number(string name, Action<int> set)
{
    if (settings.TryGetValue(name, out var value))
    {
        set(int.Parse(value, CultureInfo.InvariantCulture));
    }
}

static Dictionary<string, string> ParseArguments(string[] args)
{
    var result = new Dictionary<string, string>(StringComparer.Ordinal);
    for (var i = 0; i + 1 < args.Length; i += 2)
    {
        result[args[i].TrimStart('-')] = args[i + 1];
    }

    return result;
}

/// <summary>Writes one row per call into &lt;schema&gt;.tool_effects, in the tool's transaction: the row exists exactly
/// when the tool's result was recorded (exactly once, whatever crashes in between).</summary>
internal sealed class RecordEffectTool(string schema) : ITransactionalTool
{
    public string Name => "record_effect";

    public string Description => "Records that the effect named in the input happened.";

    public ToolSchema InputSchema { get; } = new()
    {
        Properties = new Dictionary<string, PropertyDef>
        {
            ["effect"] = new() { Type = "string", Description = "What happened" },
            ["hold_ms"] = new() { Type = "integer", Minimum = 0, Maximum = 60000, Description = "How long the tool takes" },
            ["fail_attempts"] = new() { Type = "integer", Minimum = 0, Description = "How many attempts fail before one succeeds" },
        },
        Required = ["effect"],
    };

    public async Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var effect = input.GetProperty("effect").GetString()!;
        if (input.TryGetProperty("fail_attempts", out var failAttempts) && context.Attempt <= failAttempts.GetInt32())
        {
            // Thrown: the attempt is retried after AgentPgOptions.ToolRetry's backoff, on whichever instance claims it then.
            throw new InvalidOperationException($"attempt {context.Attempt} of {effect} fails");
        }

        var transaction = context.Transaction!;
        await using (var command = new NpgsqlCommand(
            $"INSERT INTO \"{schema}\".tool_effects (execution_id, run_id, effect, attempt) VALUES ($1, $2, $3, $4)",
            transaction.Connection, transaction))
        {
            command.Parameters.Add(new NpgsqlParameter { Value = context.ToolExecutionId });
            command.Parameters.Add(new NpgsqlParameter { Value = context.RunId });
            command.Parameters.Add(new NpgsqlParameter { Value = effect });
            command.Parameters.Add(new NpgsqlParameter { Value = context.Attempt });
            await command.ExecuteNonQueryAsync(cancellationToken);
        }

        if (input.TryGetProperty("hold_ms", out var hold))
        {
            await Task.Delay(hold.GetInt32(), cancellationToken);
        }

        return "recorded " + effect;
    }
}
