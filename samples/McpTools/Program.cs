// AgentPg with MCP tools: connect to an MCP server over stdio, register its tools, and let an agent call two of them.
//
//   ./build.sh sample McpTools [--csharp]                  a throwaway PostgreSQL, then this program
//   dotnet run --project samples/McpTools [-- --csharp]    the database in AGENTPG_CONNECTION
//
// The server is @modelcontextprotocol/server-everything: from AGENTPG_MCP_EVERYTHING (./build.sh test installs it
// into artifacts/npm) through node, else through npx (downloads it from the npm registry). Without node, or with
// --csharp, it is the small C# MCP server in SampleServer.cs: this same program started with --serve.
//
// With ANTHROPIC_API_KEY set it talks to Claude; without it, to the bundled fake Claude, scripted to call the tools.

using AgentPg;
using AgentPg.Mcp;
using AgentPg.Testing;
using McpTools;
using Microsoft.Extensions.Logging;
using Npgsql;

if (args is ["--serve"])
{
    await SampleServer.RunAsync();
    return 0;
}

var csharp = args.Contains("--csharp");
var connectionString = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION") is { Length: > 0 } configured
    ? configured
    : "Host=127.0.0.1;Username=postgres;Database=postgres";
using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(3));
using var loggerFactory = LoggerFactory.Create(logging => logging
    .AddSimpleConsole(console => console.SingleLine = true)
    .SetMinimumLevel(LogLevel.Warning));

var server = ChooseServer(csharp);
Console.WriteLine($"MCP server  {server.Description}");

// The fake Claude calls {server}__echo and {server}__get-sum, then answers with what they returned.
await using var fakeClaude = string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY"))
    ? await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
    {
        Responder = request => request.ToolResults.Count > 0
            ? FakeReply.Text("The tools said: " + string.Join(" / ", request.ToolResults.Select(r => r.Content)))
            : FakeReply.Message(
                FakeContentBlock.ToolUse("mcp__echo", new { message = "Hello from AgentPg" }),
                FakeContentBlock.ToolUse("mcp__get-sum", new { a = 17, b = 25 })) with { StopReason = "tool_use" },
    })
    : null;

try
{
    await using var dataSource = NpgsqlDataSource.Create(connectionString);
    await new AgentPgMigrator(dataSource).MigrateAsync(cancellationToken: timeout.Token);
    var options = new AgentPgOptions { LoggerFactory = loggerFactory };
    if (fakeClaude is not null)
    {
        options.BaseUrl = fakeClaude.BaseUrl;
        options.ApiKey = fakeClaude.ApiKey;
    }

    Console.WriteLine(fakeClaude is null ? "Claude      the Claude API" : "Claude      fake (set ANTHROPIC_API_KEY for Claude)");
    await using var client = AgentPgClient.Create(dataSource, options);

    // Connects, lists the server's tools and registers each as mcp__{tool}, with its complete JSON Schema. The
    // connection lives as long as the client: it reconnects and follows tools/list_changed.
    var source = await client.AddMcpServerAsync(server.Options, timeout.Token);
    Console.WriteLine($"Connected   {source.ServerInfo}: {source.ToolNames.Count} tools ({string.Join(", ", source.ToolNames.Take(6))}{(source.ToolNames.Count > 6 ? ", …" : "")})");

    var agent = await client.GetOrCreateAgentAsync(new AgentDefinition
    {
        Name = "mcp-tools",
        Model = "claude-sonnet-4-5",
        SystemPrompt = "You are a concise assistant. Use the tools to echo text and add numbers.",
        // Runs of this agent are only claimed by instances connected to the server (they registered these tools).
        Tools = ["mcp__echo", "mcp__get-sum"],
    }, timeout.Token);
    await client.StartAsync(timeout.Token);

    var prompt = "Echo 'Hello from AgentPg' and add 17 and 25.";
    Console.WriteLine();
    Console.WriteLine($"> {prompt}");
    var response = await client.RunFastSyncAsync(await client.NewSessionAsync(cancellationToken: timeout.Token), agent.Id, prompt,
        cancellationToken: timeout.Token);
    foreach (var call in response.ToolCalls)
    {
        Console.WriteLine($"  [tool] {call.Name}({call.Input.GetRawText()}) = {(call.IsError ? "error: " + call.ErrorMessage : call.Output)}");
    }

    Console.WriteLine();
    Console.WriteLine(response.Text);

    // Stopping closes the connection: the server process exits.
    await client.StopAsync(timeout.Token);
    return 0;
}
catch (InvalidOperationException ex) when (ex.Message.StartsWith("MCP server", StringComparison.Ordinal))
{
    Console.Error.WriteLine($"McpTools failed: {ex.Message}");
    Console.Error.WriteLine("Try --csharp to use the bundled C# MCP server instead.");
    return 1;
}
catch (NpgsqlException ex)
{
    Console.Error.WriteLine($"McpTools failed: PostgreSQL error: {ex.Message}");
    Console.Error.WriteLine("Is PostgreSQL running? Set AGENTPG_CONNECTION, or use ./build.sh sample McpTools for a throwaway database.");
    return 1;
}

static (McpServerOptions Options, string Description) ChooseServer(bool csharp)
{
    if (!csharp && Environment.GetEnvironmentVariable("AGENTPG_MCP_EVERYTHING") is { Length: > 0 } entry && File.Exists(entry) && OnPath("node"))
    {
        return (new McpServerOptions { Name = "mcp", Command = "node", Arguments = [entry, "stdio"] }, $"server-everything through node ({entry})");
    }

    if (!csharp && OnPath("npx"))
    {
        return (new McpServerOptions { Name = "mcp", Command = "npx", Arguments = ["-y", "@modelcontextprotocol/server-everything", "stdio"] },
            "server-everything through npx");
    }

    // This program, started again with --serve, is a small C# MCP server with the same two tools.
    var self = Environment.ProcessPath!;
    var arguments = Path.GetFileNameWithoutExtension(self) == "dotnet"
        ? new[] { typeof(SampleServer).Assembly.Location, "--serve" }
        : ["--serve"];
    return (new McpServerOptions { Name = "mcp", Command = self, Arguments = arguments }, "the C# sample server (this program with --serve)");
}

static bool OnPath(string command) => (Environment.GetEnvironmentVariable("PATH") ?? "")
    .Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries)
    .Any(dir => File.Exists(Path.Combine(dir, command)));
