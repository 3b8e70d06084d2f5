using System.Net;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.AdminUi;

/// <summary>Restoring a compaction from the admin UI: the way out of a regeneration refused with RunCompacted, scoped to the
/// tenant and the visible agents like every action.</summary>
public sealed class AdminCompactionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string SummarizerPrompt = "You summarise conversations";
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static FakeReply Script(FakeRequest request)
        => FakeReply.Text(request.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal) ? "SUMMARY of the earlier turns" : "answer to " + request.LastUserText);

    private static FormUrlEncodedContent Form(string token, Guid session)
        => new([new("__RequestVerificationToken", token), new("session", session.ToString())]);

    /// <summary>Two turns of a tenant's session, then a compaction that summarised all but the last answer (the last run's
    /// prompt included, so that run cannot be regenerated while it is in place).</summary>
    private static async Task<(Guid Session, Guid LastRun, CompactionResult Compaction)> CompactedSessionAsync(AdminApp app, AgentDefinition agent, string tenant)
    {
        var session = await app.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant });
        await Eventually.WithinAsync(app.Client.RunFastSyncAsync(session, agent.Id, "question 0"), "the first turn", s_timeout);
        var last = await Eventually.WithinAsync(app.Client.RunFastSyncAsync(session, agent.Id, "question 1"), "the second turn", s_timeout);
        var compaction = await app.Client.CompactAsync(session, new CompactionOptions
        {
            Strategy = CompactionStrategy.Summarization, ProtectedTokens = 0, PreserveLastN = 1, TargetTokens = 1, UseTokenCountingApi = false,
        });
        Assert.True(compaction.SummaryCreated);
        return (session, last.RunId, compaction);
    }

    [DatabaseFact]
    public async Task RestoreFromTheCompactionPage_AfterARefusedRegeneration_ThenTheRegenerationGoesThrough()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = Script });
        await using var app = await AdminApp.StartAsync(db, claude, worker: true);
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "cmp_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var tenant = "cmp-" + Guid.NewGuid().ToString("N")[..8];
        var (session, lastRun, compaction) = await CompactedSessionAsync(app, agent, tenant);
        using var http = app.HttpClient(tenant: tenant);
        using var other = app.HttpClient(user: "bob", tenant: "other-" + tenant);

        // The regeneration is refused with the library's reason and a link to the session's compactions.
        var (token, page) = await AdminHttpTests.FormTokenAsync(http, $"compaction?session={session}");
        Assert.Contains($"/compaction/{compaction.EventId}/restore", page, StringComparison.Ordinal);
        var regenerate = await http.PostAsync($"runs/{lastRun}/regenerate", new FormUrlEncodedContent([new("__RequestVerificationToken", token)]));
        Assert.Equal(HttpStatusCode.Conflict, regenerate.StatusCode);
        var refusal = await regenerate.Content.ReadAsStringAsync();
        Assert.Contains("cannot be regenerated", refusal, StringComparison.Ordinal);
        Assert.Contains($"compaction?session={session}", refusal, StringComparison.Ordinal);

        // Another tenant, a session that is not the compaction's, or no antiforgery token: refused, nothing restored.
        var (otherToken, _) = await AdminHttpTests.FormTokenAsync(other, "chat");
        Assert.Equal(HttpStatusCode.NotFound, (await other.PostAsync($"compaction/{compaction.EventId}/restore", Form(otherToken, session))).StatusCode);
        var elsewhere = await app.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant });
        Assert.Equal(HttpStatusCode.NotFound, (await http.PostAsync($"compaction/{compaction.EventId}/restore", Form(token, elsewhere))).StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, (await http.PostAsync($"compaction/{compaction.EventId}/restore",
            new FormUrlEncodedContent([new("session", session.ToString())]))).StatusCode);
        Assert.Null(Assert.Single(await app.Client.GetCompactionEventsAsync(session)).RestoredAt);

        var restored = await http.PostAsync($"compaction/{compaction.EventId}/restore", Form(token, session));

        Assert.Equal(HttpStatusCode.Redirect, restored.StatusCode);
        Assert.EndsWith($"/compaction?session={session}", restored.Headers.Location!.OriginalString, StringComparison.Ordinal);
        Assert.NotNull(Assert.Single(await app.Client.GetCompactionEventsAsync(session)).RestoredAt);
        Assert.DoesNotContain(await app.Client.GetMessagesAsync(session), m => m.IsSummary);
        Assert.DoesNotContain($"/compaction/{compaction.EventId}/restore", await http.GetStringAsync($"compaction?session={session}"), StringComparison.Ordinal);
        var again = await http.PostAsync($"compaction/{compaction.EventId}/restore", Form(token, session));
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        Assert.Contains("restored", await again.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        var regenerated = await http.PostAsync($"runs/{lastRun}/regenerate", new FormUrlEncodedContent([new("__RequestVerificationToken", token)]));
        Assert.Equal(HttpStatusCode.Redirect, regenerated.StatusCode);
    }

    [DatabaseFact]
    public async Task Restore_IsRefusedToARequestThatMayNotSeeTheSessionsAgent_AndAbsentWhenReadOnly()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = Script });
        var hiddenName = "hid_" + Guid.NewGuid().ToString("N")[..8];
        await using var app = await AdminApp.StartAsync(db, claude, worker: true, configure: o => o.AgentFilter = (_, agent) => agent.Name != hiddenName);
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = hiddenName, Model = "claude-sonnet-4-5" });
        var tenant = "cmh-" + Guid.NewGuid().ToString("N")[..8];
        var (session, _, compaction) = await CompactedSessionAsync(app, agent, tenant);
        using var http = app.HttpClient(tenant: tenant);

        var (token, _) = await AdminHttpTests.FormTokenAsync(http, $"compaction?session={session}");
        var refused = await http.PostAsync($"compaction/{compaction.EventId}/restore", Form(token, session));

        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Contains("holds runs of an agent you may not see", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Null(Assert.Single(await app.Client.GetCompactionEventsAsync(session)).RestoredAt);

        await using var readOnly = await AdminApp.StartAsync(db, configure: o => o.ReadOnly = true);
        using var reader = readOnly.HttpClient(tenant: tenant);
        var html = await reader.GetStringAsync($"compaction?session={session}");
        Assert.Contains("<td>Summarization</td>", html, StringComparison.Ordinal);
        Assert.DoesNotContain("method=\"post\"", html, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.Forbidden, (await reader.PostAsync($"compaction/{compaction.EventId}/restore", Form("x", session))).StatusCode);
        Assert.Null(Assert.Single(await app.Client.GetCompactionEventsAsync(session)).RestoredAt);
    }
}
