// AgentPg agent hierarchy and cancellation: a project manager delegates to two leads, one of which delegates again,
// then a long run is cancelled mid-tool and the same session carries on.
//
//   ./build.sh sample Hierarchy
//   AGENTPG_CONNECTION="Host=...;Username=..." dotnet run --project samples/Hierarchy
//
// With ANTHROPIC_API_KEY it talks to Claude; without, to FakeClaudeServer scripted below to play each agent.

using AgentPg;
using AgentPg.Testing;
using Npgsql;

var connectionString = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION") is { Length: > 0 } configured
    ? configured
    : "Host=127.0.0.1;Username=postgres;Database=postgres";
await using var dataSource = NpgsqlDataSource.Create(connectionString);
try
{
    await new AgentPgMigrator(dataSource).MigrateAsync();
}
catch (NpgsqlException ex)
{
    // The first statement that needs the database: say what to do instead of a stack trace.
    Console.Error.WriteLine($"Hierarchy failed: PostgreSQL error: {ex.Message}");
    Console.Error.WriteLine("Is PostgreSQL running? Set AGENTPG_CONNECTION, or use ./build.sh sample Hierarchy for a throwaway database.");
    return 1;
}

await using var fake = string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY")) ? await FakeClaudeServer.StartAsync() : null;
var options = new AgentPgOptions();
if (fake is not null)
{
    options.BaseUrl = fake.BaseUrl;
    options.ApiKey = fake.ApiKey;
    fake.Respond(Script.Answer);
}

await using var client = AgentPgClient.Create(dataSource, options);
client.RegisterTool(FunctionTool.Create("run_tests", "Runs the test suite of a component and reports the result.",
    (string component) => $"{component}: 128 tests passed"));
client.RegisterTool(FunctionTool.Create("long_migration", "Migrates the production database. Takes a long time.",
    async (string target, CancellationToken cancellationToken) =>
    {
        // Cancelling the run cancels this token, on whichever instance runs the tool.
        await Task.Delay(TimeSpan.FromMinutes(10), cancellationToken);
        return $"migrated {target}";
    }));

// Agents are database rows; delegates are offered to Claude as tools named after them.
var backend = await client.GetOrCreateAgentAsync(Agent("backend_engineer", "Builds and tests backend components.", tools: ["run_tests"]));
var lead = await client.GetOrCreateAgentAsync(Agent("engineering_lead", "Plans engineering work and delegates it.", delegates: [backend.Id]));
var designer = await client.GetOrCreateAgentAsync(Agent("design_lead", "Reviews the user experience."));
var manager = await client.GetOrCreateAgentAsync(Agent("project_manager", "Coordinates the project.", delegates: [lead.Id, designer.Id]));
var operations = await client.GetOrCreateAgentAsync(Agent("operations", "Runs operations.", tools: ["long_migration"]));

await client.StartAsync();
var session = await client.NewSessionAsync();

Console.WriteLine("1. A three-level hierarchy: project_manager → engineering_lead → backend_engineer, and design_lead");
var response = await client.RunFastSyncAsync(session, manager.Id, "Ship the login page this week.", new RunOptions
{
    OnToolStart = e => Console.WriteLine($"   [{(e.IsAgentTool ? "delegate" : "tool")}] {e.ToolName} {e.ToolInput.GetRawText()}"),
});
foreach (var call in response.ToolCalls)
{
    Console.WriteLine($"   {call.Name} (child run {call.ChildRunId}) answered: {call.Output}");
}

Console.WriteLine($"   Answer: {response.Text}");
Console.WriteLine($"   Usage: {response.Usage.TotalTokens} tokens for the manager, {response.TotalUsage.TotalTokens} for the whole tree");

Console.WriteLine();
Console.WriteLine("2. Cancel a run while its tool is running");
var toolStarted = new TaskCompletionSource();
var migration = await client.RunFastAsync(session, operations.Id, "Migrate the production database.", new RunOptions
{
    OnToolStart = _ => toolStarted.TrySetResult(),
});
await toolStarted.Task.WaitAsync(TimeSpan.FromMinutes(1));
await client.CancelRunAsync(migration);
try
{
    await client.WaitForRunAsync(migration);
}
catch (AgentPgException ex) when (ex.Code == AgentPgErrorCode.RunCancelled)
{
    Console.WriteLine($"   {ex.Message}");
}

var afterCancel = (await client.GetMessagesAsync(session)).Last(m => m.RunId == migration);
Console.WriteLine($"   The dangling tool call got a result, so the conversation stays valid: {afterCancel.Content[0].Type} \"{afterCancel.Content[0].ToolContent}\"");

Console.WriteLine();
Console.WriteLine("3. The session carries on");
var next = await client.RunFastSyncAsync(session, manager.Id, "What is the status?");
Console.WriteLine($"   Answer: {next.Text}");

await client.StopAsync();
return 0;

static AgentDefinition Agent(string name, string description, IReadOnlyList<string>? tools = null, IReadOnlyList<Guid>? delegates = null) => new()
{
    Name = name,
    Description = description,
    Model = "claude-sonnet-4-5",
    SystemPrompt = $"You are the {name.Replace('_', ' ')}. {description}",
    Tools = tools ?? [],
    AgentIds = delegates ?? [],
};

/// <summary>The fake Claude's script: each agent (recognized by its system prompt) delegates or answers.</summary>
internal static class Script
{
    public static FakeReply? Answer(FakeRequest request)
    {
        var done = request.ToolResults.Count > 0;
        return request.SystemText switch
        {
            var s when s.Contains("project manager", StringComparison.Ordinal) && request.LastUserText.Contains("status", StringComparison.Ordinal)
                => FakeReply.Text("The login page shipped; the database migration was cancelled and can be rescheduled."),
            var s when s.Contains("project manager", StringComparison.Ordinal) => done
                ? FakeReply.Text("Plan: " + string.Join(" | ", request.ToolResults.Select(r => r.Content)))
                : FakeReply.Message(
                    FakeContentBlock.ToolUse("engineering_lead", new { task = "Build the login page" }),
                    FakeContentBlock.ToolUse("design_lead", new { task = "Review the login page" })) with { StopReason = "tool_use" },
            var s when s.Contains("engineering lead", StringComparison.Ordinal) => done
                ? FakeReply.Text("Engineering: " + request.ToolResults[0].Content)
                : FakeReply.ToolUse("backend_engineer", new { task = "Implement and test the login API" }),
            var s when s.Contains("backend engineer", StringComparison.Ordinal) => done
                ? FakeReply.Text("Login API done; " + request.ToolResults[0].Content)
                : FakeReply.ToolUse("run_tests", new { component = "login-api" }),
            var s when s.Contains("design lead", StringComparison.Ordinal) => FakeReply.Text("Design: the login page is clear and accessible."),
            var s when s.Contains("operations", StringComparison.Ordinal) => FakeReply.ToolUse("long_migration", new { target = "production" }),
            _ => null,
        };
    }
}
