using System.Collections.Concurrent;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Approvals;

/// <summary>The refund tool of the approval tests: records every execution (the input it got); its script asks for one
/// refund (plus a lookup when asked), then answers with the tool results as text.</summary>
internal sealed class Refunds
{
    private static readonly ToolSchema s_schema = new()
    {
        Properties = new Dictionary<string, PropertyDef>
        {
            ["order"] = new() { Type = "string", MinLength = 1 },
            ["amount"] = new() { Type = "number", Minimum = 0, Maximum = 500 },
        },
        Required = ["order", "amount"],
    };

    public ConcurrentQueue<JsonElement> Calls { get; } = new();

    /// <summary>The tool; its output is "refunded AMOUNT on ORDER", then <paramref name="receipt"/>.</summary>
    public TestTool Tool(string name = "issue_refund", string receipt = "") => new(name, (_, input, _) =>
    {
        Calls.Enqueue(input.Clone());
        return Task.FromResult($"refunded {input.GetProperty("amount").GetDouble()} on {input.GetProperty("order").GetString()}{receipt}");
    }, s_schema);

    /// <summary>First answer: the refund call (and a lookup when <paramref name="withLookup"/>); then the tool results as text.</summary>
    public static FakeReply Script(FakeRequest request, bool withLookup = false)
    {
        if (request.ToolResults.Count == 0)
        {
            var refund = FakeContentBlock.ToolUse("issue_refund", new { order = "A-1", amount = 40 });
            return (withLookup ? FakeReply.Message(FakeContentBlock.ToolUse("lookup", new { }), refund) : FakeReply.Message(refund)) with { StopReason = "tool_use" };
        }

        return FakeReply.Text(string.Join(" | ", request.ToolResults.Select(t => (t.IsError ? "ERROR " : "") + t.Content)));
    }

    /// <summary>Waits (with a deadline) until the session lists an approval request for <paramref name="toolName"/>.</summary>
    public static async Task<ToolApprovalRequest> PendingAsync(AgentPgClient client, Guid session, TimeSpan timeout, string toolName = "issue_refund")
    {
        ToolApprovalRequest? found = null;
        await Eventually.TrueAsync(async () =>
        {
            found = (await client.GetPendingApprovalsAsync(session)).FirstOrDefault(r => r.ToolName == toolName);
            return found is not null;
        }, $"an approval request for {toolName} is listed", timeout);
        return found!;
    }
}
