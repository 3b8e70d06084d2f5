using System.Net;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.AdminUi;

/// <summary>The admin UI's isolation beyond the tenant filter of its pages: the agents a request may chat with
/// (<see cref="AspNetCore.AgentPgAdminOptions.AgentFilter"/>) in every action that starts a run, and the antiforgery token of
/// one user, which does not act for another.</summary>
public sealed class AdminTenantTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task AgentFilter_AConversationOfAHiddenAgent_CannotBeContinuedOrRegenerated()
    {
        await using var app = await AdminApp.StartAsync(db, configure: o => o.AgentFilter = AdminApp.TenantAgentFilter);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        string acme = "acme-" + suffix, globex = "globex-" + suffix;
        var hidden = await app.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "internal_" + suffix,
            Model = "claude-sonnet-4-5",
            Metadata = new Dictionary<string, object?> { ["tenant"] = globex },
        });
        var visible = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "shared_" + suffix, Model = "claude-sonnet-4-5" });
        // An acme conversation the application ran with an agent acme's operators may not chat with.
        var session = await app.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = acme });
        var run = await db.Seed.RunAsync(session, hidden.Id, prompt: "internal work");
        await db.Seed.FinishRunAsync(run);
        using var http = app.HttpClient(tenant: acme);

        var page = await http.GetStringAsync($"chat/{session}");
        Assert.Contains("not one you may chat with", page, StringComparison.Ordinal);
        Assert.DoesNotContain($"/runs/{run}/regenerate", page, StringComparison.Ordinal);
        Assert.DoesNotContain("name=\"message\"", page, StringComparison.Ordinal);
        Assert.DoesNotContain($"/runs/{run}/regenerate", await http.GetStringAsync($"runs/{run}"), StringComparison.Ordinal);
        var (token, _) = await AdminHttpTests.FormTokenAsync(http, "chat");
        var continued = await http.PostAsync("chat/send", new FormUrlEncodedContent(
            [new("__RequestVerificationToken", token), new("session", session.ToString()), new("message", "go on")]));
        Assert.Equal(HttpStatusCode.BadRequest, continued.StatusCode);
        var regenerated = await http.PostAsync($"runs/{run}/regenerate", new FormUrlEncodedContent([new("__RequestVerificationToken", token)]));
        Assert.Equal(HttpStatusCode.BadRequest, regenerated.StatusCode);
        Assert.Single((await app.Client.ListRunsAsync(new RunQuery { SessionId = session })).Items);

        // The conversation goes on with an agent the request may chat with, named in the form.
        var switched = await http.PostAsync("chat/send", new FormUrlEncodedContent(
            [new("__RequestVerificationToken", token), new("session", session.ToString()), new("agent", visible.Name), new("message", "go on")]));
        Assert.Equal(HttpStatusCode.Redirect, switched.StatusCode);
        var latest = (await app.Client.ListRunsAsync(new RunQuery { SessionId = session, Limit = 1 })).Items[0];
        Assert.Equal(visible.Id, latest.AgentId);
    }

    [DatabaseFact]
    public async Task Post_WithAnotherUsersTokenAndCookie_Is400AndDoesNothing()
    {
        await using var app = await AdminApp.StartAsync(db);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "csrf_" + suffix, Model = "claude-sonnet-4-5" });
        var tenant = "t-" + suffix;
        var session = await app.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant });
        var run = await app.Client.RunFastAsync(session, agent.Id, "wait");
        using var ann = app.HttpClient(user: "ann", tenant: tenant);
        // One browser (one cookie jar) in which mallory's own valid pair, cookie and form token, was planted, then used by a
        // request that runs as ann: antiforgery tokens are bound to the signed-in user, so the pair does not act for her.
        using var browser = new HttpClientHandler { AllowAutoRedirect = false, CookieContainer = new CookieContainer() };
        using var asMallory = new HttpClient(browser, disposeHandler: false) { BaseAddress = app.Root };
        asMallory.DefaultRequestHeaders.Add(AdminApp.UserHeader, "mallory");
        asMallory.DefaultRequestHeaders.Add(AdminApp.TenantHeader, tenant);
        using var asAnn = new HttpClient(browser, disposeHandler: false) { BaseAddress = app.Root };
        asAnn.DefaultRequestHeaders.Add(AdminApp.UserHeader, "ann");
        asAnn.DefaultRequestHeaders.Add(AdminApp.TenantHeader, tenant);

        var (token, _) = await AdminHttpTests.FormTokenAsync(asMallory, $"runs/{run}");
        var response = await asAnn.PostAsync($"runs/{run}/cancel", new FormUrlEncodedContent([new("__RequestVerificationToken", token)]));

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Contains("antiforgery", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(RunState.Pending, (await app.Client.GetRunAsync(run)).State);

        // Ann's own pair goes through.
        var (annToken, _) = await AdminHttpTests.FormTokenAsync(ann, $"runs/{run}");
        var cancel = await ann.PostAsync($"runs/{run}/cancel", new FormUrlEncodedContent([new("__RequestVerificationToken", annToken)]));
        Assert.Equal(HttpStatusCode.Redirect, cancel.StatusCode);
        Assert.Equal(RunState.Cancelled, (await app.Client.GetRunAsync(run)).State);
    }
}
