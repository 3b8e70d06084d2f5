using System.Net;
using AgentPg.Tests.Infrastructure;
using Microsoft.Playwright;

namespace AgentPg.Tests.AdminUi;

/// <summary>Deleting a session from the admin UI: from the page in a real browser after a confirmation, and the refusals over
/// HTTP (no antiforgery token, no confirmation, read-only, another tenant's session or child session, an agent the request
/// may not see, a run not finished), each of which deletes nothing.</summary>
public sealed class AdminSessionDeletionTests(SchemaFixture db, Chromium chromium) : IClassFixture<SchemaFixture>, IClassFixture<Chromium>
{
    [DatabaseFact]
    public async Task DeleteButton_InTheBrowser_AsksForTheConfirmation_ThenDeletesTheSessionWithItsChildSessionAndRuns()
    {
        await using var app = await AdminApp.StartAsync(db);
        var seed = await AdminSeed.CreateAsync(db, app.Client, "d-" + Guid.NewGuid().ToString("N")[..8]);
        var child = await app.Client.NewSessionAsync(seed.Session, Tenant(seed.Tenant));
        var childRun = await db.Seed.RunAsync(child, seed.Agent);
        await db.Seed.FinishRunAsync(childRun);
        var kept = await app.Client.NewSessionAsync(metadata: Tenant(seed.Tenant));
        var (page, errors) = await chromium.PageAsync(tenant: seed.Tenant);

        await page.GotoAsync(new Uri(app.Root, $"sessions/{seed.Session}").ToString());
        await page.ClickAsync("summary:has-text('Delete this session')");
        // Unticked, the browser does not send the form.
        await page.ClickAsync("button:has-text('Delete session')");
        Assert.False(await page.EvaluateAsync<bool>("() => document.querySelector('details.danger-zone input[name=confirm]').checkValidity()"));
        Assert.EndsWith($"/sessions/{seed.Session}", page.Url, StringComparison.Ordinal);
        Assert.Equal(seed.Session, (await app.Client.GetSessionAsync(seed.Session)).Id);

        await page.CheckAsync("details.danger-zone input[name=confirm]");
        await page.ClickAsync("button:has-text('Delete session')");
        // The sessions list after the redirect, by its heading (WaitForURLAsync, which then waits for the load state, timed
        // out in about one run of ten here).
        await page.WaitForSelectorAsync("main h1:text-is('Sessions')");
        Assert.EndsWith("/agentpg/sessions", page.Url, StringComparison.Ordinal);

        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { seed.Session, child }));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE id = ANY ($1)", new[] { seed.Run, childRun }));
        var list = await page.InnerTextAsync("main");
        Assert.DoesNotContain(AdminShort(seed.Session), list, StringComparison.Ordinal);
        Assert.Contains(AdminShort(kept), list, StringComparison.Ordinal);
        Assert.Empty(errors);
    }

    [DatabaseFact]
    public async Task Delete_WithoutAValidAntiforgeryTokenOrTheConfirmation_Is400AndDeletesNothing()
    {
        await using var app = await AdminApp.StartAsync(db);
        var session = await app.Client.NewSessionAsync();
        using var http = app.HttpClient();

        var noToken = await http.PostAsync($"sessions/{session}/delete", Form(null, confirm: true));
        Assert.Equal(HttpStatusCode.BadRequest, noToken.StatusCode);
        Assert.Contains("antiforgery", await noToken.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var forged = await http.PostAsync($"sessions/{session}/delete", Form("forged", confirm: true));
        Assert.Equal(HttpStatusCode.BadRequest, forged.StatusCode);

        var (token, html) = await AdminHttpTests.FormTokenAsync(http, $"sessions/{session}");
        Assert.Contains($"action=\"/agentpg/sessions/{session}/delete\"", html, StringComparison.Ordinal);
        var unconfirmed = await http.PostAsync($"sessions/{session}/delete", Form(token, confirm: false));
        Assert.Equal(HttpStatusCode.BadRequest, unconfirmed.StatusCode);
        Assert.Contains("Tick the box", await unconfirmed.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(session, (await app.Client.GetSessionAsync(session)).Id);

        var deleted = await http.PostAsync($"sessions/{session}/delete", Form(token, confirm: true));
        Assert.Equal(HttpStatusCode.Redirect, deleted.StatusCode);
        Assert.Equal("/agentpg/sessions", deleted.Headers.Location?.OriginalString);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = $1", session));
    }

    [DatabaseFact]
    public async Task Delete_ReadOnly_HasNoFormAndIsRefused()
    {
        await using var app = await AdminApp.StartAsync(db, configure: o => o.ReadOnly = true);
        var session = await app.Client.NewSessionAsync();
        using var http = app.HttpClient();

        var html = await http.GetStringAsync($"sessions/{session}");
        Assert.DoesNotContain("method=\"post\"", html, StringComparison.Ordinal);
        Assert.DoesNotContain($"sessions/{session}/delete", html, StringComparison.Ordinal);

        var post = await http.PostAsync($"sessions/{session}/delete", Form(null, confirm: true));
        Assert.Equal(HttpStatusCode.Forbidden, post.StatusCode);
        Assert.Equal(session, (await app.Client.GetSessionAsync(session)).Id);
    }

    [DatabaseFact]
    public async Task Delete_AnotherTenantsSession_Is404_AndOneWithAChildSessionOfAnotherTenant_IsRefusedNamingNoneOfItsRuns()
    {
        await using var app = await AdminApp.StartAsync(db);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        string acme = "acme-" + suffix, globex = "globex-" + suffix;
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "tenant_" + suffix, Model = "claude-sonnet-4-5" });
        var globexSession = await app.Client.NewSessionAsync(metadata: Tenant(globex));
        var acmeSession = await app.Client.NewSessionAsync(metadata: Tenant(acme));
        // A child session of acme's session that the application gave to globex, with a run not finished in it: deleting acme's
        // session would take it along, and a busy message would name globex's run.
        var globexChild = await app.Client.NewSessionAsync(acmeSession, Tenant(globex));
        var globexRun = await app.Client.RunFastAsync(globexChild, agent.Id, "globex's work");
        using var http = app.HttpClient(user: "ann", tenant: acme);
        var (token, _) = await AdminHttpTests.FormTokenAsync(http, $"sessions/{acmeSession}");

        var other = await http.PostAsync($"sessions/{globexSession}/delete", Form(token, confirm: true));
        Assert.Equal(HttpStatusCode.NotFound, other.StatusCode);

        var tree = await http.PostAsync($"sessions/{acmeSession}/delete", Form(token, confirm: true));
        var body = await tree.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.Forbidden, tree.StatusCode);
        Assert.Contains("child sessions outside your tenant", body, StringComparison.Ordinal);
        Assert.DoesNotContain(globexRun.ToString(), body, StringComparison.Ordinal);
        Assert.DoesNotContain(globexChild.ToString(), body, StringComparison.Ordinal);

        Assert.Equal(3L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { globexSession, acmeSession, globexChild }));
        Assert.Equal(RunState.Pending, (await app.Client.GetRunAsync(globexRun)).State);

        // An operator who sees every tenant deletes the tree (the library's rule: child sessions go with their root), once
        // its run is finished.
        await app.Client.CancelRunAsync(globexRun);
        using var everyone = app.HttpClient(user: "root");
        var (rootToken, _) = await AdminHttpTests.FormTokenAsync(everyone, $"sessions/{acmeSession}");
        Assert.Equal(HttpStatusCode.Redirect, (await everyone.PostAsync($"sessions/{acmeSession}/delete", Form(rootToken, confirm: true))).StatusCode);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { acmeSession, globexChild }));
        Assert.Equal(globexSession, (await app.Client.GetSessionAsync(globexSession)).Id);
    }

    [DatabaseFact]
    public async Task Delete_WhileAnotherTenantsChildSessionIsBeingCreatedInTheTree_WaitsForIt_AndIsRefused()
    {
        await using var app = await AdminApp.StartAsync(db);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        string acme = "acme-" + suffix, globex = "globex-" + suffix;
        var acmeSession = await app.Client.NewSessionAsync(metadata: Tenant(acme));
        using var http = app.HttpClient(user: "ann", tenant: acme);
        var (token, _) = await AdminHttpTests.FormTokenAsync(http, $"sessions/{acmeSession}");
        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        var sneaked = await app.Client.NewSessionAsync(transaction, acmeSession, Tenant(globex));

        // The page's checks (the session is acme's, and it has no child yet) pass before the child commits: only the
        // statement that deletes, under the lock the child's creation holds up, can see it.
        var deletion = http.PostAsync($"sessions/{acmeSession}/delete", Form(token, confirm: true));
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0", db.Schema) > 0,
            "the deletion waits for the transaction that creates a child session", TimeSpan.FromSeconds(60));
        await transaction.CommitAsync();

        var response = await Eventually.WithinAsync(deletion, "the deletion", TimeSpan.FromSeconds(60));
        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal(2L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { acmeSession, sneaked }));
    }

    [DatabaseFact]
    public async Task Delete_ASessionHoldingRunsOfAnAgentTheRequestMayNotSee_IsRefused()
    {
        await using var app = await AdminApp.StartAsync(db, configure: o => o.AgentFilter = AdminApp.TenantAgentFilter);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        string acme = "acme-" + suffix, globex = "globex-" + suffix;
        var hidden = await app.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "internal_" + suffix,
            Model = "claude-sonnet-4-5",
            Metadata = Tenant(globex),
        });
        var session = await app.Client.NewSessionAsync(metadata: Tenant(acme));
        var child = await app.Client.NewSessionAsync(session, Tenant(acme));
        var run = await db.Seed.RunAsync(child, hidden.Id);
        await db.Seed.FinishRunAsync(run);
        using var http = app.HttpClient(user: "ann", tenant: acme);
        var (token, _) = await AdminHttpTests.FormTokenAsync(http, $"sessions/{session}");

        var response = await http.PostAsync($"sessions/{session}/delete", Form(token, confirm: true));

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Contains("an agent you may not see", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(RunState.Completed, (await app.Client.GetRunAsync(run)).State);
        Assert.Equal(2L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { session, child }));
    }

    [DatabaseFact]
    public async Task AgentFilter_WithMoreThanAThousandAgents_SeesTheAgentsAfterTheFirstThousand()
    {
        await using var app = await AdminApp.StartAsync(db, configure: o => o.AgentFilter = AdminApp.TenantAgentFilter);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var tenant = "many-" + suffix;
        // A thousand agents of another tenant sort before the request's own agent ('a…' < 'z…').
        for (var i = 0; i < 1000; i++)
        {
            await app.Client.CreateAgentAsync(new AgentDefinition
            {
                Name = $"a{i:0000}_{suffix}",
                Model = "claude-sonnet-4-5",
                Metadata = Tenant("other-" + suffix),
            });
        }

        var own = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "z_" + suffix, Model = "claude-sonnet-4-5", Metadata = Tenant(tenant) });
        var session = await app.Client.NewSessionAsync(metadata: Tenant(tenant));
        var run = await db.Seed.RunAsync(session, own.Id);
        await db.Seed.FinishRunAsync(run);
        using var http = app.HttpClient(user: "ann", tenant: tenant);

        // The new conversation form offers the agent, and the session of its run can be deleted.
        Assert.Contains($"<option value=\"{own.Name}\">", await http.GetStringAsync("chat"), StringComparison.Ordinal);
        var (token, _) = await AdminHttpTests.FormTokenAsync(http, $"sessions/{session}");
        var response = await http.PostAsync($"sessions/{session}/delete", Form(token, confirm: true));

        Assert.Equal(HttpStatusCode.Redirect, response.StatusCode);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = $1", session));
    }

    [DatabaseFact]
    public async Task Delete_ASessionWithARunNotFinished_Is409WithTheBusyMessageAndALinkToTheRun_ThenDeletesOnceItIsCancelled()
    {
        await using var app = await AdminApp.StartAsync(db);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "busy_" + suffix, Model = "claude-sonnet-4-5" });
        var session = await app.Client.NewSessionAsync(metadata: Tenant("t-" + suffix));
        var child = await app.Client.NewSessionAsync(session, Tenant("t-" + suffix));
        var run = await app.Client.RunFastAsync(child, agent.Id, "nobody processes this run");
        using var http = app.HttpClient(tenant: "t-" + suffix);
        var (token, _) = await AdminHttpTests.FormTokenAsync(http, $"sessions/{session}");

        var busy = await http.PostAsync($"sessions/{session}/delete", Form(token, confirm: true));

        var body = await busy.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.Conflict, busy.StatusCode);
        Assert.Contains($"has 1 run that is not finished ({run})", body, StringComparison.Ordinal);
        Assert.Contains($"href=\"/agentpg/runs/{run}\"", body, StringComparison.Ordinal);
        Assert.Equal(RunState.Pending, (await app.Client.GetRunAsync(run)).State);
        Assert.Equal(2L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { session, child }));

        await app.Client.CancelRunAsync(run);
        Assert.Equal(HttpStatusCode.Redirect, (await http.PostAsync($"sessions/{session}/delete", Form(token, confirm: true))).StatusCode);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = ANY ($1)", new[] { session, child }));
    }

    private static Dictionary<string, object?> Tenant(string tenant) => new() { ["tenant"] = tenant };

    private static string AdminShort(Guid id) => id.ToString("N")[..8];

    private static FormUrlEncodedContent Form(string? token, bool confirm)
    {
        var fields = new List<KeyValuePair<string, string>>();
        if (token is not null)
        {
            fields.Add(new("__RequestVerificationToken", token));
        }

        if (confirm)
        {
            fields.Add(new("confirm", "yes"));
        }

        return new FormUrlEncodedContent(fields);
    }
}
