using System.Net;
using System.Text.RegularExpressions;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace AgentPg.Tests.AdminUi;

/// <summary>Model output that would make a page show something else than what is stored and runs: a bidirectional override
/// (U+202E) reverses the text after it, so an approver could read another address than the one the tool gets. Pages show
/// such controls visibly, JSON as its escape (the same value: approving the form unchanged runs Claude's input).</summary>
public sealed partial class AdminHostileTextTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string Rlo = "\u202E";

    private static readonly ToolSchema s_schema = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["to"] = new() { Type = "string" } },
        Required = ["to"],
    };

    [DatabaseFact]
    public async Task BidiOverrides_InModelTextAndToolInput_AreShownVisibly_AndAnUneditedApprovalRunsClaudesInput()
    {
        var received = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
        {
            Responder = r => r.ToolResults.Count == 0
                ? FakeReply.Message(FakeContentBlock.Text($"Paying {Rlo}moc.live@bob"),
                    FakeContentBlock.ToolUse("send_payment", new { to = $"{Rlo}moc.live@bob" })) with { StopReason = "tool_use" }
                : FakeReply.Text($"sent {Rlo}enod"),
        });
        var tool = new TestTool("send_payment", (_, input, _) =>
        {
            var to = input.GetProperty("to").GetString()!;
            received.TrySetResult(to);
            return Task.FromResult("sent to " + to);
        }, s_schema);
        await using var app = await AdminApp.StartAsync(db, claude, worker: true, agentpgBuilder: b => b.AddTool(tool));
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "payer_" + suffix, Model = "claude-sonnet-4-5", Tools = ["send_payment"], ToolsRequiringApproval = ["send_payment"],
        });
        var tenant = "bidi-" + suffix;
        var session = await app.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant });
        var run = await app.Client.RunFastAsync(session, agent.Id, $"pay {Rlo}live");
        ToolApprovalRequest? request = null;
        await Eventually.TrueAsync(async () => (request = (await app.Client.GetPendingApprovalsAsync(session)) is [var first, ..] ? first : null) is not null,
            "the payment waits for approval");
        using var http = app.HttpClient(user: "ann", tenant: tenant);

        var (token, inbox) = await AdminHttpTests.FormTokenAsync(http, "approvals");
        Assert.DoesNotContain(Rlo, inbox, StringComparison.Ordinal);
        Assert.Contains("\\u202Emoc.live@bob", inbox, StringComparison.Ordinal);
        // The form's input, sent back as the approver saw it, is Claude's input: no edit.
        var shown = WebUtility.HtmlDecode(InputField().Match(inbox).Groups[1].Value);
        var approve = await http.PostAsync($"approvals/{request!.ToolExecutionId}/approve",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("input", shown)]));
        Assert.Equal(HttpStatusCode.Redirect, approve.StatusCode);
        Assert.Equal($"{Rlo}moc.live@bob", await Eventually.WithinAsync(received.Task, "the tool runs"));
        var response = await Eventually.WithinAsync(app.Client.WaitForRunAsync(run), "the run completes");
        Assert.Null(Assert.Single(response.ToolCalls).Approval!.OriginalInput);

        foreach (var path in new[] { $"runs/{run}", $"sessions/{session}", $"chat/{session}", $"tool-executions/{request.ToolExecutionId}" })
        {
            var html = await http.GetStringAsync(path);
            Assert.False(html.Contains(Rlo, StringComparison.Ordinal), $"{path} holds a raw U+202E");
            Assert.Contains("[U+202E]", html, StringComparison.Ordinal);
        }
    }

    [GeneratedRegex("<textarea name=\"input\"[^>]*>([^<]*)</textarea>")]
    private static partial Regex InputField();
}
