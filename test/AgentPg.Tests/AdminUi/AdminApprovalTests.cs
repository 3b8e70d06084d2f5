using System.Net;
using System.Text.RegularExpressions;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Playwright;

namespace AgentPg.Tests.AdminUi;

/// <summary>The approvals inbox: scoped to the tenant, approve (with an edited input) and reject over HTTP, and in the browser
/// a request appearing without a reload and the run completing on screen after the approval.</summary>
public sealed class AdminApprovalTests(SchemaFixture db, Chromium chromium) : IClassFixture<SchemaFixture>, IClassFixture<Chromium>
{
    private static readonly ToolSchema s_schema = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["order"] = new() { Type = "string" }, ["amount"] = new() { Type = "number", Maximum = 500 } },
        Required = ["order", "amount"],
    };

    private static FakeReply Script(FakeRequest request)
        => request.ToolResults.Count == 0
            ? FakeReply.Message(FakeContentBlock.ToolUse("issue_refund", new { order = "A-1", amount = 40 })) with { StopReason = "tool_use" }
            : FakeReply.Text("done: " + string.Join(" | ", request.ToolResults.Select(t => (t.IsError ? "ERROR " : "") + t.Content)));

    private static async Task<(AdminApp App, FakeClaudeServer Claude, AgentDefinition Agent)> StartAsync(SchemaFixture db)
    {
        var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = Script });
        var tool = new TestTool("issue_refund", (_, input, _) => Task.FromResult($"refunded {input.GetProperty("amount").GetDouble()}"), s_schema);
        var app = await AdminApp.StartAsync(db, claude, worker: true, agentpgBuilder: b => b.AddTool(tool));
        var agent = await app.Client.GetOrCreateAgentAsync(new AgentDefinition
        {
            Name = "refunder", Model = "claude-sonnet-4-5", Tools = ["issue_refund"], ToolsRequiringApproval = ["issue_refund"],
        });
        return (app, claude, agent);
    }

    private static async Task<(Guid Session, Guid Run, ToolApprovalRequest Request)> RequestAsync(AdminApp app, AgentDefinition agent, string tenant)
    {
        var session = await app.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant });
        var run = await app.Client.RunFastAsync(session, agent.Id, "refund A-1");
        ToolApprovalRequest? request = null;
        await Eventually.TrueAsync(async () => (request = (await app.Client.GetPendingApprovalsAsync(session)) is [var first, ..] ? first : null) is not null,
            "the refund waits for approval");
        return (session, run, request!);
    }

    [DatabaseFact]
    public async Task EventStream_OfARunWaitingForApproval_ShowsTheCallAsAwaitingApproval()
    {
        var (app, claude, agent) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        var tenant = "ev-" + Guid.NewGuid().ToString("N")[..8];
        var (_, run, request) = await RequestAsync(app, agent, tenant);
        using var http = app.HttpClient(tenant: tenant);
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        // The stream stays open while the run waits: read it until the request's line.
        using var response = await http.GetAsync($"runs/{run}/events", HttpCompletionOption.ResponseHeadersRead, cancel.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
        string? line;
        while ((line = await reader.ReadLineAsync(cancel.Token)) is not null && !line.Contains(request.ToolExecutionId.ToString(), StringComparison.Ordinal))
        {
        }

        Assert.NotNull(line);
        Assert.Contains("\"name\":\"issue_refund\"", line, StringComparison.Ordinal);
        Assert.Contains("\"awaiting\":true", line, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task ApprovingACallWhoseSessionIsDeletedMeanwhile_AnswersNotFound_NotAServerError()
    {
        // The page finds the call, then its session is deleted (docs/operations.md) before the decision reads the call again.
        // Before, the decision's ToolExecutionNotFound escaped as a 500. Made deterministic: the deleting transaction also
        // holds agentpg_tools, which only the check of an edited input reads, and commits while that check waits for it.
        var (app, claude, agent) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        var tenant = "gone-" + Guid.NewGuid().ToString("N")[..8];
        var (session, _, request) = await RequestAsync(app, agent, tenant);
        using var http = app.HttpClient(user: "ann", tenant: tenant);
        var (token, _) = await AdminHttpTests.FormTokenAsync(http, "approvals");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var hold = new Npgsql.NpgsqlCommand($"LOCK TABLE \"{db.Schema}\".agentpg_tools IN ACCESS EXCLUSIVE MODE", connection, transaction))
        {
            await hold.ExecuteNonQueryAsync();
        }

        await using (var delete = new Npgsql.NpgsqlCommand($"DELETE FROM \"{db.Schema}\".agentpg_sessions WHERE id = $1", connection, transaction))
        {
            delete.Parameters.Add(new Npgsql.NpgsqlParameter { Value = session });
            Assert.Equal(1, await delete.ExecuteNonQueryAsync());
        }

        var approve = http.PostAsync($"approvals/{request.ToolExecutionId}/approve", new FormUrlEncodedContent(
            [new("__RequestVerificationToken", token), new("input", """{"order": "A-1", "amount": 25}""")]));
        await Eventually.TrueAsync(async () => approve.IsCompleted || await db.ScalarAsync<long>(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%' || $1 || '%agentpg_tools%' AND query LIKE '%te.tool_name%'",
                db.Schema) > 0,
            "the check of the edited input waits for agentpg_tools, which the deleting transaction holds");
        await transaction.CommitAsync();
        var response = await approve;

        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Contains("no longer exists", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task ApproveAndReject_FromTheInbox_DecideAsTheSignedInUser()
    {
        var (app, claude, agent) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        var tenant = "ap-" + Guid.NewGuid().ToString("N")[..8];
        var (_, approvedRun, approved) = await RequestAsync(app, agent, tenant);
        var (_, rejectedRun, rejected) = await RequestAsync(app, agent, tenant);
        using var http = app.HttpClient(user: "ann", tenant: tenant);
        using var other = app.HttpClient(user: "bob", tenant: "other-" + tenant);

        var (token, inbox) = await AdminHttpTests.FormTokenAsync(http, "approvals");
        Assert.Contains(approved.ToolExecutionId.ToString(), inbox, StringComparison.Ordinal);
        Assert.DoesNotContain(approved.ToolExecutionId.ToString(), await other.GetStringAsync("approvals"), StringComparison.Ordinal);
        var (otherToken, _) = await AdminHttpTests.FormTokenAsync(other, "chat");
        Assert.Equal(HttpStatusCode.NotFound, (await other.PostAsync($"approvals/{approved.ToolExecutionId}/approve",
            new FormUrlEncodedContent([new("__RequestVerificationToken", otherToken)]))).StatusCode);

        var badJson = await http.PostAsync($"approvals/{approved.ToolExecutionId}/approve",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("input", "{not json")]));
        Assert.Equal(HttpStatusCode.BadRequest, badJson.StatusCode);
        var invalid = await http.PostAsync($"approvals/{approved.ToolExecutionId}/approve",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("input", """{"order": "A-1", "amount": 9000}""")]));
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        Assert.Contains("amount", await invalid.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        var approve = await http.PostAsync($"approvals/{approved.ToolExecutionId}/approve", new FormUrlEncodedContent(
            [new("__RequestVerificationToken", token), new("input", """{"order": "A-1", "amount": 25}"""), new("comment", "half now")]));
        Assert.Equal(HttpStatusCode.Redirect, approve.StatusCode);
        var reject = await http.PostAsync($"approvals/{rejected.ToolExecutionId}/reject",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("reason", "not eligible")]));
        Assert.Equal(HttpStatusCode.Redirect, reject.StatusCode);
        var twice = await http.PostAsync($"approvals/{rejected.ToolExecutionId}/reject",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("reason", "again")]));
        Assert.Equal(HttpStatusCode.Conflict, twice.StatusCode);

        var approvedResponse = await Eventually.WithinAsync(app.Client.WaitForRunAsync(approvedRun), "the approved run completes");
        // The edited input is announced to Claude ahead of the tool's output (docs/approvals.md).
        Assert.StartsWith("done: The approver changed the input of this call before it ran;", approvedResponse.Text, StringComparison.Ordinal);
        Assert.EndsWith("\n\nrefunded 25", approvedResponse.Text, StringComparison.Ordinal);
        var decision = (await app.Client.GetRunToolCallsAsync(approvedRun)).Single().Approval!;
        Assert.True(decision.Approved);
        Assert.Equal("ann", decision.DecidedBy);
        Assert.Equal("half now", decision.Comment);
        var rejectedResponse = await Eventually.WithinAsync(app.Client.WaitForRunAsync(rejectedRun), "the rejected run completes");
        Assert.Contains("ERROR", rejectedResponse.Text, StringComparison.Ordinal);
        Assert.Contains("not eligible", rejectedResponse.Text, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task ReasonAndComment_LongerThanTheOld1000_StoredWhole_OverTheLimit_RefusedWithA400_NeverCut()
    {
        // The inbox cut a reason or a comment to 1 000 characters without a word (the form said maxlength 1000; a hand-crafted
        // post went through and Claude read a reason cut mid-sentence). The limit is the client's, MaxToolOutputLength.
        var (app, claude, agent) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        var tenant = "ln-" + Guid.NewGuid().ToString("N")[..8];
        var (_, rejectedRun, rejected) = await RequestAsync(app, agent, tenant);
        var (_, approvedRun, approved) = await RequestAsync(app, agent, tenant);
        using var http = app.HttpClient(user: "ann", tenant: tenant);
        var max = app.Client.Options.MaxToolOutputLength!.Value;

        var (token, inbox) = await AdminHttpTests.FormTokenAsync(http, "approvals");
        Assert.Contains($"<input name=\"reason\" required maxlength=\"{max}\"", inbox, StringComparison.Ordinal);
        Assert.Contains($"<input name=\"comment\" maxlength=\"{max}\"", inbox, StringComparison.Ordinal);

        var tooLong = await http.PostAsync($"approvals/{rejected.ToolExecutionId}/reject",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("reason", new string('r', max + 1))]));
        Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
        Assert.Contains("MaxToolOutputLength", await tooLong.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var commentTooLong = await http.PostAsync($"approvals/{approved.ToolExecutionId}/approve",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("comment", new string('c', max + 1))]));
        Assert.Equal(HttpStatusCode.BadRequest, commentTooLong.StatusCode);
        Assert.Contains("MaxToolOutputLength", await commentTooLong.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(2, (await app.Client.GetPendingApprovalsAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant })).Count);

        var reason = "not eligible: " + new string('r', 1500) + " (end)";
        var comment = "checked: " + new string('c', 1500) + " (end)";
        Assert.Equal(HttpStatusCode.Redirect, (await http.PostAsync($"approvals/{rejected.ToolExecutionId}/reject",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("reason", reason)]))).StatusCode);
        Assert.Equal(HttpStatusCode.Redirect, (await http.PostAsync($"approvals/{approved.ToolExecutionId}/approve",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("comment", comment)]))).StatusCode);

        Assert.EndsWith(reason, (await Eventually.WithinAsync(app.Client.WaitForRunAsync(rejectedRun), "the rejected run")).Text, StringComparison.Ordinal);
        Assert.Equal(reason, (await app.Client.GetRunToolCallsAsync(rejectedRun)).Single().Approval!.Comment);
        await Eventually.WithinAsync(app.Client.WaitForRunAsync(approvedRun), "the approved run");
        Assert.Equal(comment, (await app.Client.GetRunToolCallsAsync(approvedRun)).Single().Approval!.Comment);
    }

    [DatabaseFact]
    public async Task Approve_ALongUneditedInputWithAccents_ShownReadableAndRunsWithTheModelsInput()
    {
        var (app, claude, agent) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        // An order reference longer than a textarea's old 10 000-character limit, with text beyond ASCII.
        var order = "Café São Paulo + <b> " + new string('x', 12_000);
        claude.Respond(request => request.ToolResults.Count == 0
            ? FakeReply.Message(FakeContentBlock.ToolUse("issue_refund", new { order, amount = 40 })) with { StopReason = "tool_use" }
            : FakeReply.Text("done: " + request.ToolResults[0].Content));
        var tenant = "lg-" + Guid.NewGuid().ToString("N")[..8];
        var (_, run, request) = await RequestAsync(app, agent, tenant);
        using var http = app.HttpClient(tenant: tenant);

        // The inbox shows the input as people read it (not "Caf\u00E9"), and the form carries it back as the browser does.
        var (token, inbox) = await AdminHttpTests.FormTokenAsync(http, "approvals");
        var textarea = Regex.Match(inbox, "<textarea name=\"input\"[^>]*>([^<]*)</textarea>");
        Assert.True(textarea.Success, "no input textarea in the inbox");
        Assert.DoesNotContain("maxlength", textarea.Value, StringComparison.Ordinal);
        var shown = WebUtility.HtmlDecode(textarea.Groups[1].Value);
        Assert.Contains("\"Café São Paulo + <b> xxx", shown, StringComparison.Ordinal);
        var approve = await http.PostAsync($"approvals/{request.ToolExecutionId}/approve",
            new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("input", shown), new("comment", "")]));

        Assert.True(approve.StatusCode == HttpStatusCode.Redirect, $"{(int)approve.StatusCode}: {await approve.Content.ReadAsStringAsync()}");
        Assert.Equal("done: refunded 40", (await Eventually.WithinAsync(app.Client.WaitForRunAsync(run), "the approved run completes")).Text);
        var decision = (await app.Client.GetRunToolCallsAsync(run)).Single().Approval!;
        Assert.True(decision.Approved);
        Assert.Null(decision.OriginalInput);
    }

    [DatabaseFact]
    public async Task Browser_ARequestAppearsWithoutReload_ApprovingItCompletesTheRunOnScreen()
    {
        var (app, claude, agent) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        var tenant = "br-" + Guid.NewGuid().ToString("N")[..8];
        var (page, errors) = await chromium.PageAsync(tenant: tenant);
        await page.GotoAsync(new Uri(app.Root, "approvals").ToString());
        Assert.Contains("No tool call is waiting", await page.InnerTextAsync("main"), StringComparison.Ordinal);

        var (_, run, request) = await RequestAsync(app, agent, tenant);

        var card = page.Locator($"[data-approval='{request.ToolExecutionId}']");
        await card.WaitForAsync(new LocatorWaitForOptions { Timeout = 30_000 });
        await card.Locator("button:has-text('Approve')").ClickAsync();
        await page.GotoAsync(new Uri(app.Root, $"runs/{run}").ToString());
        await page.Locator(".facts .badge.state-completed").WaitForAsync(new LocatorWaitForOptions { Timeout = 30_000 });
        Assert.Contains("done: refunded 40", await page.InnerTextAsync("main"), StringComparison.Ordinal);
        Assert.DoesNotContain(errors, e => !e.Contains("/events", StringComparison.Ordinal));
    }
}
