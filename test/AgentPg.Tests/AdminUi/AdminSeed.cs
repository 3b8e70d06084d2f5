using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.AdminUi;

/// <summary>One tenant's data as the admin pages show it: a session with a finished run whose conversation and tool output
/// hold markup a browser must never execute.</summary>
public sealed record AdminSeed(string Tenant, Guid Agent, string AgentName, Guid Session, Guid Run, Guid Iteration, Guid ToolExecution)
{
    public const string Hostile = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">";

    public static async Task<AdminSeed> CreateAsync(SchemaFixture db, AgentPgClient client, string tenant)
    {
        var name = "admin_" + Guid.NewGuid().ToString("N")[..10];
        var agent = await client.CreateAgentAsync(new AgentDefinition { Name = name, Model = "claude-sonnet-4-5", SystemPrompt = "You help." });
        var session = await client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant });
        var run = await db.Seed.RunAsync(session, agent.Id, prompt: "look it up " + Hostile);
        await db.Seed.UserTextAsync(session, run, "look it up " + Hostile);
        await db.Seed.ToolUseAsync(session, run, "toolu_" + tenant, "lookup");
        var iteration = await db.Seed.ToolIterationAsync(run);
        var execution = await db.Seed.ToolExecutionAsync(run, iteration, "toolu_" + tenant, "lookup");
        await db.Seed.CompleteToolExecutionAsync(execution, "found " + Hostile);
        await db.Seed.FinishRunAsync(run, "completed", inputTokens: 120, outputTokens: 30);
        return new AdminSeed(tenant, agent.Id, name, session, run, iteration, execution);
    }
}
