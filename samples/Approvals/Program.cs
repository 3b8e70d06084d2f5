// AgentPg approvals (human in the loop): a refund agent whose issue_refund tool needs a person's approval. The worker
// client records the request and lets go of the run; a second client (an approver's back office, in another process in
// real life) lists the pending request, approves one refund with a corrected amount and rejects another with a reason.
//
//   ./build.sh sample Approvals
//   AGENTPG_CONNECTION="Host=...;Username=..." dotnet run --project samples/Approvals
//
// With ANTHROPIC_API_KEY it talks to Claude; without, to FakeClaudeServer scripted below to play the refund agent.

using System.Text.Json;
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
    Console.Error.WriteLine($"Approvals failed: PostgreSQL error: {ex.Message}");
    Console.Error.WriteLine("Is PostgreSQL running? Set AGENTPG_CONNECTION, or use ./build.sh sample Approvals for a throwaway database.");
    return 1;
}

await using var fake = string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY")) ? await FakeClaudeServer.StartAsync() : null;
var options = new AgentPgOptions
{
    // Nobody answered within a week: the leader rejects the request with "approval timed out" and the agent carries on.
    ApprovalTimeout = TimeSpan.FromDays(7),
    Hooks = new AgentPgHooks
    {
        // The place to send an email or a chat message; the request stays listed whatever the hook does.
        OnApprovalRequested = (request, _) =>
        {
            Console.WriteLine($"   [notify] {request.ToolName} {request.Input.GetRawText()} waits for approval (execution {request.ToolExecutionId})");
            return Task.CompletedTask;
        },
    },
};
if (fake is not null)
{
    options.BaseUrl = fake.BaseUrl;
    options.ApiKey = fake.ApiKey;
    fake.Respond(Script.Answer);
}

// The worker: it has the tools and runs the agent.
await using var worker = AgentPgClient.Create(dataSource, options);
worker.RegisterTool(FunctionTool.Create("lookup_order", "Looks up an order: its customer and what was paid.",
    (string order) => $"order {order}: customer Dana, paid 120.00 EUR, delivered damaged"));
worker.RegisterTool(FunctionTool.Create("issue_refund", "Refunds part or all of an order to the customer's card.",
    (string order, decimal amount) => $"refunded {amount:0.00} EUR on order {order}"));

var agent = await worker.GetOrCreateAgentAsync(new AgentDefinition
{
    Name = "refund_agent",
    Description = "Handles refund requests.",
    Model = "claude-sonnet-4-5",
    SystemPrompt = "You are the refund agent of a shop. Look the order up, then refund what is fair.",
    Tools = ["lookup_order", "issue_refund"],
    // Looking an order up needs nobody; moving money does.
    ToolsRequiringApproval = ["issue_refund"],
});
await worker.StartAsync();

// The approver: another client (never started: it only reads and decides), as a back office in another process would be.
await using var approver = AgentPgClient.Create(dataSource, new AgentPgOptions());   // no API key: it never calls Claude

var session = await worker.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = "shop-42" });

Console.WriteLine("1. The agent asks to refund; the call waits for a person, the run holds no worker meanwhile");
var first = await worker.RunFastAsync(session, agent.Id, "Order A-1001 arrived damaged, please refund it.");
var request = await WaitForRequestAsync(approver, "shop-42");
Console.WriteLine($"   Pending: {request.ToolName} {request.Input.GetRawText()} for run {request.RunId} (depth {request.Depth}), asked at {request.RequestedAt:HH:mm:ss}");
Console.WriteLine($"   Run state while waiting: {(await approver.GetRunAsync(first)).State}");

Console.WriteLine();
Console.WriteLine("2. The approver approves with a corrected amount (validated against the tool's schema)");
await approver.ApproveToolCallAsync(request.ToolExecutionId, JsonSerializer.SerializeToElement(new { order = "A-1001", amount = 60m }),
    comment: "half: the item can be repaired", decidedBy: "dana.ops@example.com");
var response = await worker.WaitForRunAsync(first);
var refund = response.ToolCalls.Single(c => c.Name == "issue_refund");
Console.WriteLine($"   Tool output: {refund.Output}");
Console.WriteLine($"   Decision: approved={refund.Approval!.Approved} by {refund.Approval.DecidedBy} ({refund.Approval.Comment}); Claude asked for {refund.Approval.OriginalInput?.GetRawText()}");
Console.WriteLine($"   Answer: {response.Text}");

Console.WriteLine();
Console.WriteLine("3. A second request is rejected: the tool never runs, Claude reads the reason");
var second = await worker.RunFastAsync(session, agent.Id, "Refund order A-1001 again, the customer is still unhappy.");
request = await WaitForRequestAsync(approver, "shop-42");
await approver.RejectToolCallAsync(request.ToolExecutionId, "already refunded once; offer a voucher instead", decidedBy: "dana.ops@example.com");
response = await worker.WaitForRunAsync(second);
Console.WriteLine($"   Answer: {response.Text}");

await worker.StopAsync();
return 0;

// An approval inbox per tenant: the requests of sessions whose metadata contains the tenant.
static async Task<ToolApprovalRequest> WaitForRequestAsync(AgentPgClient approver, string tenant)
{
    using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(2));
    while (true)
    {
        var pending = await approver.GetPendingApprovalsAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant }, cancellationToken: timeout.Token);
        if (pending.Count > 0)
        {
            return pending[0];
        }

        // A real inbox refreshes on a timer or on the OnApprovalRequested notification.
        await Task.Delay(TimeSpan.FromMilliseconds(100), timeout.Token);
    }
}

/// <summary>The fake Claude's script: look up, ask for the full refund, then answer with what happened.</summary>
internal static class Script
{
    public static FakeReply? Answer(FakeRequest request)
    {
        if (request.ToolResults.Count == 0)
        {
            return FakeReply.ToolUse("lookup_order", new { order = "A-1001" });
        }

        var last = request.ToolResults[^1];
        if (last.Content.StartsWith("order ", StringComparison.Ordinal))
        {
            return FakeReply.ToolUse("issue_refund", new { order = "A-1001", amount = 120.00m });
        }

        return FakeReply.Text(last.IsError
            ? $"I could not refund the order ({last.Content}). I will offer the customer a voucher instead."
            : $"Done: {last.Content}. The customer has been informed.");
    }
}
