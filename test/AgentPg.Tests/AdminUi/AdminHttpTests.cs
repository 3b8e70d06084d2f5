using System.Net;
using System.Text.RegularExpressions;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;

namespace AgentPg.Tests.AdminUi;

/// <summary>The admin UI over HTTP, without a browser: access control, every route's status codes, tenant isolation, encoding
/// of untrusted output, antiforgery and read-only mode.</summary>
public sealed partial class AdminHttpTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly string[] s_listPages =
        ["dashboard", "dashboard?window=hour", "usage", "usage?period=24h&group=model&then=day", "runs", "sessions", "tool-executions", "agents", "instances", "compaction", "chat"];

    [DatabaseFact]
    public async Task NoAuthorizationRequirement_EveryRequestRefusedWithHowToConfigureAccess()
    {
        await using var app = await AdminApp.StartAsync(db, protect: false);
        using var http = app.HttpClient(user: "admin");

        foreach (var path in s_listPages.Append("assets/admin.css"))
        {
            var response = await http.GetAsync(path);
            Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
            Assert.Contains("RequireAuthorization", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        var post = await http.PostAsync("chat/send", new FormUrlEncodedContent([new("message", "hi")]));
        Assert.Equal(HttpStatusCode.Forbidden, post.StatusCode);
    }

    [DatabaseFact]
    public async Task AllowAnonymous_ServesTheUiWithoutAPolicy()
    {
        await using var app = await AdminApp.StartAsync(db, protect: false, configure: o => o.AllowAnonymous = true);
        using var http = app.HttpClient(user: null);

        Assert.Equal(HttpStatusCode.OK, (await http.GetAsync("dashboard")).StatusCode);
    }

    [DatabaseFact]
    public async Task Protected_AnonymousRequest_IsChallengedBeforeAnyPage()
    {
        await using var app = await AdminApp.StartAsync(db);
        using var http = app.HttpClient(user: null);

        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("dashboard")).StatusCode);
        Assert.Equal(HttpStatusCode.Unauthorized, (await http.GetAsync("runs")).StatusCode);
    }

    [DatabaseFact]
    public async Task EveryPage_RendersSeededDataWithASecurityPolicy()
    {
        await using var app = await AdminApp.StartAsync(db);
        var seed = await AdminSeed.CreateAsync(db, app.Client, "t-" + Guid.NewGuid().ToString("N")[..8]);
        using var http = app.HttpClient(tenant: seed.Tenant);

        var detailPages = new[]
        {
            $"runs/{seed.Run}", $"sessions/{seed.Session}", $"tool-executions/{seed.ToolExecution}", $"chat/{seed.Session}",
            $"compaction?session={seed.Session}", $"runs?agent={seed.Agent}", $"runs?state=completed&mode=streaming&since=24h&root=1",
            $"tool-executions?run={seed.Run}&state=completed&kind=tool&tool=lookup", $"runs?session={seed.Session}",
        };
        foreach (var path in s_listPages.Concat(detailPages))
        {
            var response = await http.GetAsync(path);
            var html = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"GET {path} → {(int)response.StatusCode}: {html[..Math.Min(html.Length, 400)]}");
            Assert.Equal("text/html; charset=utf-8", response.Content.Headers.ContentType?.ToString());
            Assert.Contains("default-src 'none'", response.Headers.GetValues("Content-Security-Policy").Single(), StringComparison.Ordinal);
            Assert.Equal("nosniff", response.Headers.GetValues("X-Content-Type-Options").Single());
        }

        Assert.Contains(seed.Run.ToString("N")[..8], await http.GetStringAsync("runs"), StringComparison.Ordinal);
        Assert.Contains(seed.Session.ToString("N")[..8], await http.GetStringAsync("sessions"), StringComparison.Ordinal);
        Assert.Contains("lookup", await http.GetStringAsync("tool-executions"), StringComparison.Ordinal);
        Assert.Contains(seed.AgentName, await http.GetStringAsync("agents"), StringComparison.Ordinal);
        var root = await http.GetAsync("");
        Assert.Equal(HttpStatusCode.Redirect, root.StatusCode);
        Assert.EndsWith("/agentpg/dashboard", root.Headers.Location!.ToString(), StringComparison.Ordinal);
        var css = await http.GetAsync("assets/admin.css");
        Assert.Equal("text/css; charset=utf-8", css.Content.Headers.ContentType?.ToString());
        Assert.Equal(HttpStatusCode.NotFound, (await http.GetAsync("assets/other.js")).StatusCode);
    }

    [DatabaseFact]
    public async Task AgentsPage_ShowsThinkingEffortLimitsMemoryAndTheOutputSchema_Encoded()
    {
        // AgentDefinition.Thinking, Effort and OutputSchema were shown nowhere: an operator could not see why an agent's
        // answers came back as JSON, or cost what they did.
        await using var app = await AdminApp.StartAsync(db);
        using var http = app.HttpClient();
        var suffix = Guid.NewGuid().ToString("N")[..8];
        using var schema = System.Text.Json.JsonDocument.Parse("""
            {"type":"object","properties":{"verdict":{"type":"string","description":"</pre><script>alert(1)</script> & more"}},
             "required":["verdict"],"additionalProperties":false}
            """);
        await app.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "judge_" + suffix, Model = "claude-sonnet-4-5", MaxTokens = 8192, Thinking = AgentThinking.Enabled(2048),
            Effort = AgentEffort.ExtraHigh, OutputSchema = schema.RootElement.Clone(),
        });
        await app.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "plain_" + suffix, Model = "claude-sonnet-4-5", Thinking = AgentThinking.Adaptive.WithDisplay(AgentThinkingDisplay.Omitted),
        });
        await app.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "bounded_" + suffix, Model = "claude-sonnet-4-5", MaxIterations = 12, TokenBudget = 50_000,
            Memory = AgentMemory.PerSessionMetadata("<b>tenant</b>"), ServerTools = [ServerTool.WebSearch(), ServerTool.CodeExecution()],
        });

        var html = await http.GetStringAsync("agents");

        var judge = Regex.Match(html, $"<tr><td><strong>judge_{suffix}</strong>.*?</tr>", RegexOptions.Singleline);
        Assert.True(judge.Success, "no row for the judge agent");
        Assert.Contains("thinking: enabled, 2048 tokens · effort: xhigh", judge.Value, StringComparison.Ordinal);
        Assert.Contains("<details><summary>output schema</summary><pre>", judge.Value, StringComparison.Ordinal);
        Assert.Contains("&quot;verdict&quot;", judge.Value, StringComparison.Ordinal);
        Assert.Contains("&lt;/pre&gt;&lt;script&gt;alert(1)&lt;/script&gt; &amp; more", judge.Value, StringComparison.Ordinal);
        Assert.DoesNotContain("<script>", html, StringComparison.Ordinal);
        var plain = Regex.Match(html, $"<tr><td><strong>plain_{suffix}</strong>.*?</tr>", RegexOptions.Singleline);
        Assert.Contains("thinking: adaptive, display omitted", plain.Value, StringComparison.Ordinal);
        Assert.DoesNotContain("effort", plain.Value, StringComparison.Ordinal);
        Assert.DoesNotContain("output schema", plain.Value, StringComparison.Ordinal);
        Assert.DoesNotContain("memory", plain.Value, StringComparison.Ordinal);
        var bounded = Regex.Match(html, $"<tr><td><strong>bounded_{suffix}</strong>.*?</tr>", RegexOptions.Singleline);
        // Only what the agent has, joined (an agent without thinking started its list with a separator).
        Assert.Contains("<span data-agent-settings>max iterations: 12 · token budget: 50000 · memory: per session metadata &#x27;&lt;b&gt;tenant&lt;/b&gt;&#x27; · server tools: web_search, code_execution</span>",
            bounded.Value, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task EventStream_OfARunWaitingForAnUnavailableClaude_SendsTheWait_WhichTheLivePageShows()
    {
        // The live run page's wait display (ModelUnavailableEvent, event "waiting") had no test.
        await using var h = await Harness.StartAsync(db, start: false);
        var overloaded = 0;
        h.Claude.Respond(r => r.LastUserText != "wait for claude" ? FakeReply.Text("other")
            : Interlocked.Increment(ref overloaded) == 1 ? FakeReply.Error(529, "overloaded_error", "Overloaded <b>now</b>", TimeSpan.FromMilliseconds(1))
            : FakeReply.Text("after the wait"));
        await using var app = await AdminApp.StartAsync(db, h.Claude);
        var agent = await h.AgentAsync();
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "wait for claude");
        using var http = app.HttpClient();
        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(60));

        using var response = await http.GetAsync($"runs/{run}/events", HttpCompletionOption.ResponseHeadersRead, cancel.Token);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(cancel.Token));
        // The first event (the run's creation, replayed) comes once the watch is registered: only then may the run start.
        Assert.Equal("id: 1", await reader.ReadLineAsync(cancel.Token));
        await h.Client.StartAsync();
        string? line;
        while ((line = await reader.ReadLineAsync(cancel.Token)) is not null && line != "event: waiting")
        {
        }

        Assert.Equal("event: waiting", line);
        var data = await reader.ReadLineAsync(cancel.Token);
        Assert.StartsWith("data: ", data, StringComparison.Ordinal);
        using var wait = System.Text.Json.JsonDocument.Parse(data!["data: ".Length..]);
        Assert.Equal("Claude API error 529 overloaded_error: Overloaded <b>now</b>", wait.RootElement.GetProperty("error").GetString());
        Assert.InRange(wait.RootElement.GetProperty("waitSeconds").GetDouble(), 0.1, 2);
        Assert.True(wait.RootElement.GetProperty("failingForSeconds").GetDouble() >= 0);
        Assert.True(DateTimeOffset.TryParse(wait.RootElement.GetProperty("retryAt").GetString(), System.Globalization.CultureInfo.InvariantCulture,
            System.Globalization.DateTimeStyles.None, out _));
        Assert.Equal("after the wait", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run after the wait")).Text);

        // The live page's script writes it with textContent (never as HTML) under the answer, and removes it at the next iteration.
        var script = await http.GetStringAsync("assets/admin.js");
        Assert.Contains("on(\"waiting\"", script, StringComparison.Ordinal);
        Assert.Contains("waiting.textContent = \"Claude is unavailable (\" + data.error", script, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task BadIdsAre400_UnknownIdsAre404()
    {
        await using var app = await AdminApp.StartAsync(db);
        using var http = app.HttpClient();

        foreach (var path in new[] { "runs/not-a-guid", "sessions/1", "tool-executions/%3Cscript%3E", "chat/x", "runs?agent=x", "compaction?session=x",
                     "runs?state=exploded", "runs/not-a-guid/events", "runs?mode=fast", "runs?since=1y", "runs?cursor=garbage", "tool-executions?kind=x",
                     "tool-executions?tool=a%00b" })
        {
            var response = await http.GetAsync(path);
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"GET {path} → {(int)response.StatusCode}, expected 400");
            Assert.DoesNotContain("<script>", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }

        foreach (var path in new[] { "runs/", "sessions/", "tool-executions/", "chat/" })
        {
            var response = await http.GetAsync(path + Guid.NewGuid());
            Assert.True(response.StatusCode == HttpStatusCode.NotFound, $"GET {path}… → {(int)response.StatusCode}, expected 404");
        }
    }

    [DatabaseFact]
    public async Task AnotherTenant_GetsNotFoundForEveryIdAndSeesNoneOfThemInLists()
    {
        await using var app = await AdminApp.StartAsync(db);
        var a = await AdminSeed.CreateAsync(db, app.Client, "a-" + Guid.NewGuid().ToString("N")[..8]);
        var b = await AdminSeed.CreateAsync(db, app.Client, "b-" + Guid.NewGuid().ToString("N")[..8]);
        using var tenantB = app.HttpClient(user: "bob", tenant: b.Tenant);
        using var tenantA = app.HttpClient(user: "ann", tenant: a.Tenant);

        foreach (var path in new[] { $"runs/{a.Run}", $"sessions/{a.Session}", $"tool-executions/{a.ToolExecution}", $"chat/{a.Session}", $"compaction?session={a.Session}",
                     $"runs?session={a.Session}", $"tool-executions?run={a.Run}", $"runs/{a.Run}/events" })
        {
            Assert.Equal(HttpStatusCode.NotFound, (await tenantB.GetAsync(path)).StatusCode);
            Assert.Equal(HttpStatusCode.OK, (await tenantA.GetAsync(path)).StatusCode);
        }

        var aIds = new[] { a.Run, a.Session, a.ToolExecution }.Select(id => id.ToString("N")[..8]).ToList();
        foreach (var path in s_listPages.Concat([$"runs/{b.Run}", $"sessions/{b.Session}", $"chat/{b.Session}"]))
        {
            var html = await tenantB.GetStringAsync(path);
            foreach (var id in aIds)
            {
                Assert.False(html.Contains(id, StringComparison.Ordinal), $"tenant B's page {path} shows tenant A's id {id}");
            }
        }

        // Counts and charts: B's dashboard counts B's run only.
        var dashboard = await tenantB.GetStringAsync("dashboard");
        Assert.Matches(CompletedCard(), dashboard);
        // Actions on A's run from B are refused like a missing run, and change nothing.
        var (token, _) = await FormTokenAsync(tenantB, "chat");
        var cancel = await tenantB.PostAsync($"runs/{a.Run}/regenerate", new FormUrlEncodedContent([new("__RequestVerificationToken", token)]));
        Assert.Equal(HttpStatusCode.NotFound, cancel.StatusCode);
        Assert.Single((await app.Client.ListRunsAsync(new RunQuery { SessionId = a.Session })).Items);
    }

    [DatabaseFact]
    public async Task EventStream_OfAFinishedRun_ReplaysAsServerSentEventsAndEndsWithFinished()
    {
        await using var app = await AdminApp.StartAsync(db);
        var seed = await AdminSeed.CreateAsync(db, app.Client, "e-" + Guid.NewGuid().ToString("N")[..8]);
        using var http = app.HttpClient(tenant: seed.Tenant);

        var response = await http.GetAsync($"runs/{seed.Run}/events");
        var body = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        Assert.Contains("event: finished", body, StringComparison.Ordinal);
        Assert.Matches("id: [0-9]+", body);
        Assert.DoesNotContain("<script>", body, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task EventStream_BehindAPathBase_FollowsARunInProgressAndEndsItsWatchWhenTheBrowserLeaves()
    {
        await using var app = await AdminApp.StartAsync(db, pathBase: "/proxy");
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "ev_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await app.Client.NewSessionAsync();
        var run = await app.Client.RunFastAsync(session, agent.Id, "no worker: it stays pending");
        using var http = app.HttpClient();

        // The run page points its live stream under the path base; the stream stays open while the run waits.
        var page = await http.GetStringAsync($"runs/{run}");
        Assert.Contains($"data-events=\"/proxy/agentpg/runs/{run}/events\"", page, StringComparison.Ordinal);
        var response = await http.GetAsync($"runs/{run}/events", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using (var reader = new StreamReader(await response.Content.ReadAsStreamAsync()))
        {
            Assert.Equal("id: 1", await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal("event: state", await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(30)));
            Assert.Equal(1, app.Client.ActiveEventFeeds);
        }

        // The browser goes away: the server's watch of the run ends with the request, leaving no feed behind.
        response.Dispose();
        await Eventually.TrueAsync(() => app.Client.ActiveEventFeeds == 0, "the event stream's watch ends when its client disconnects");
    }

    [DatabaseFact]
    public async Task EventStream_OfASilentRun_SendsKeepAliveCommentsUntilSomethingHappens()
    {
        // A run waiting (here: pending, no worker) sends nothing for minutes; proxies close connections idle for 60 s. Before,
        // the stream wrote nothing between events.
        await using var app = await AdminApp.StartAsync(db, configure: o => o.KeepAliveInterval = TimeSpan.FromSeconds(1));
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "ka_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var run = await app.Client.RunFastAsync(await app.Client.NewSessionAsync(), agent.Id, "no worker: it stays pending");
        using var http = app.HttpClient();

        using var response = await http.GetAsync($"runs/{run}/events", HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var lines = new List<string>();
        var keepAlives = 0;
        await Eventually.WithinAsync(Task.Run(async () =>
        {
            while (keepAlives < 2 && await reader.ReadLineAsync() is { } line)
            {
                lines.Add(line);
                keepAlives += line == ": keep-alive" ? 1 : 0;
            }
        }), "two keep-alive comments on the silent stream");

        Assert.Equal(["id: 1", "event: state"], lines.Take(2));
        Assert.Equal(2, keepAlives);
        Assert.All(lines.Skip(4), l => Assert.True(l is ": keep-alive" or "", $"only comments after the first event, not '{l}'"));
    }

    [Fact]
    public void MapAgentPgAdmin_KeepAliveIntervalOutOfRange_ThrowsNamingTheOption()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Services.AddAgentPgAdmin();
        var app = builder.Build();

        var error = Assert.Throws<ArgumentException>(() => app.MapAgentPgAdmin(configure: o => o.KeepAliveInterval = TimeSpan.FromMilliseconds(10)));

        Assert.Contains("KeepAliveInterval must be 1 second to 1 hour", error.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task ModelAndToolOutput_AreRenderedAsText()
    {
        await using var app = await AdminApp.StartAsync(db);
        var seed = await AdminSeed.CreateAsync(db, app.Client, "x-" + Guid.NewGuid().ToString("N")[..8]);
        using var http = app.HttpClient(tenant: seed.Tenant);

        foreach (var path in new[] { $"runs/{seed.Run}", $"sessions/{seed.Session}", $"tool-executions/{seed.ToolExecution}", $"chat/{seed.Session}", "tool-executions" })
        {
            var html = await http.GetStringAsync(path);
            Assert.DoesNotContain("<script>window", html, StringComparison.Ordinal);
            Assert.DoesNotContain("<img src=x", html, StringComparison.Ordinal);
            Assert.Contains("&lt;script&gt;window.__pwned = 1&lt;/script&gt;", html, StringComparison.Ordinal);
        }
    }

    [DatabaseFact]
    public async Task Post_WithoutAValidAntiforgeryToken_Is400AndDoesNothing()
    {
        await using var app = await AdminApp.StartAsync(db);
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "af_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await app.Client.NewSessionAsync();
        var run = await app.Client.RunFastAsync(session, agent.Id, "wait");
        using var http = app.HttpClient();

        var noToken = await http.PostAsync($"runs/{run}/cancel", new FormUrlEncodedContent([]));
        Assert.Equal(HttpStatusCode.BadRequest, noToken.StatusCode);
        Assert.Contains("antiforgery", await noToken.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        var forged = await http.PostAsync($"runs/{run}/cancel", new FormUrlEncodedContent([new("__RequestVerificationToken", "forged")]));
        Assert.Equal(HttpStatusCode.BadRequest, forged.StatusCode);
        var send = await http.PostAsync("chat/send", new FormUrlEncodedContent([new("agent", agent.Name), new("message", "hello")]));
        Assert.Equal(HttpStatusCode.BadRequest, send.StatusCode);
        Assert.Equal(RunState.Pending, (await app.Client.GetRunAsync(run)).State);
        Assert.Single((await app.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items);

        // With the page's token and cookie the same cancel goes through.
        var (token, _) = await FormTokenAsync(http, $"runs/{run}");
        var cancel = await http.PostAsync($"runs/{run}/cancel", new FormUrlEncodedContent([new("__RequestVerificationToken", token)]));
        Assert.Equal(HttpStatusCode.Redirect, cancel.StatusCode);
        Assert.Equal(RunState.Cancelled, (await app.Client.GetRunAsync(run)).State);
    }

    [DatabaseFact]
    public async Task Post_WithTheTokenInTheHeaderOrAFormBeyondTheLimits_NeverA500()
    {
        await using var app = await AdminApp.StartAsync(db);
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "pf_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await app.Client.NewSessionAsync();
        var run = await app.Client.RunFastAsync(session, agent.Id, "wait");
        using var http = app.HttpClient();
        var (token, _) = await FormTokenAsync(http, $"runs/{run}");

        // Antiforgery accepts its token in a header: an action posted with no form body is carried out (it has no field to read).
        using var headerOnly = new HttpRequestMessage(HttpMethod.Post, $"runs/{run}/cancel");
        headerOnly.Headers.Add("RequestVerificationToken", token);
        var cancel = await http.SendAsync(headerOnly);
        Assert.True(cancel.StatusCode == HttpStatusCode.Redirect, $"{(int)cancel.StatusCode}: {await cancel.Content.ReadAsStringAsync()}");
        Assert.Equal(RunState.Cancelled, (await app.Client.GetRunAsync(run)).State);

        // A body that is not a form: the message is missing, as the page says.
        using var json = new HttpRequestMessage(HttpMethod.Post, "chat/send") { Content = new StringContent("""{"message":"hi"}""", System.Text.Encoding.UTF8, "application/json") };
        json.Headers.Add("RequestVerificationToken", token);
        var sent = await http.SendAsync(json);
        Assert.Equal(HttpStatusCode.BadRequest, sent.StatusCode);
        Assert.Contains("The message must be", await sent.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        // A form value beyond ASP.NET Core's form limit (4 MB): refused as a bad request that says why, and nothing is created.
        var huge = await http.PostAsync("chat/send", new FormUrlEncodedContent(
            [new("__RequestVerificationToken", token), new("agent", agent.Name), new("message", new string('x', 5_000_000))]));
        Assert.Equal(HttpStatusCode.BadRequest, huge.StatusCode);
        Assert.Contains("The form could not be read", await huge.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Single((await app.Client.ListRunsAsync(new RunQuery { AgentId = agent.Id })).Items);
    }

    [DatabaseFact]
    public async Task ChatSend_CreatesASessionOfTheTenantAndARun()
    {
        await using var app = await AdminApp.StartAsync(db);
        var tenant = "c-" + Guid.NewGuid().ToString("N")[..8];
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "chat_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        using var http = app.HttpClient(tenant: tenant);

        var (token, page) = await FormTokenAsync(http, "chat");
        Assert.Contains(agent.Name, page, StringComparison.Ordinal);
        var sent = await http.PostAsync("chat/send", new FormUrlEncodedContent(
            [new("__RequestVerificationToken", token), new("agent", agent.Name), new("message", "Hello <b>there</b>")]));

        Assert.Equal(HttpStatusCode.Redirect, sent.StatusCode);
        var sessionId = Guid.Parse(sent.Headers.Location!.ToString().Split('/')[^1]);
        Assert.Equal(tenant, (await app.Client.GetSessionAsync(sessionId)).Metadata["tenant"]);
        var run = Assert.Single((await app.Client.ListRunsAsync(new RunQuery { SessionId = sessionId })).Items);
        Assert.Equal("Hello <b>there</b>", run.Prompt);
        Assert.Equal(RunMode.Streaming, run.RunMode);

        var empty = await http.PostAsync("chat/send", new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("agent", agent.Name), new("message", " ")]));
        Assert.Equal(HttpStatusCode.BadRequest, empty.StatusCode);
        var unknown = await http.PostAsync("chat/send", new FormUrlEncodedContent([new("__RequestVerificationToken", token), new("agent", "nobody"), new("message", "hi")]));
        Assert.Equal(HttpStatusCode.BadRequest, unknown.StatusCode);
    }

    [DatabaseFact]
    public async Task AgentFilter_HidesAnotherTenantsAgents_AndRefusesAChatWithThem()
    {
        await using var app = await AdminApp.StartAsync(db, configure: o => o.AgentFilter = AdminApp.TenantAgentFilter);
        var suffix = Guid.NewGuid().ToString("N")[..8];
        string acme = "acme-" + suffix, globex = "globex-" + suffix;
        var shared = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "shared_" + suffix, Model = "claude-sonnet-4-5" });
        var own = await app.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "own_" + suffix,
            Model = "claude-sonnet-4-5",
            Metadata = new Dictionary<string, object?> { ["tenant"] = acme },
        });
        var other = await app.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "other_" + suffix,
            Model = "claude-sonnet-4-5",
            Metadata = new Dictionary<string, object?> { ["tenant"] = globex },
        });
        using var http = app.HttpClient(tenant: acme);

        foreach (var path in new[] { "agents", "chat", "runs" })
        {
            var html = await http.GetStringAsync(path);
            Assert.Contains(shared.Name, html, StringComparison.Ordinal);
            Assert.Contains(own.Name, html, StringComparison.Ordinal);
            Assert.False(html.Contains(other.Name, StringComparison.Ordinal), $"{path} shows another tenant's agent");
        }

        var (token, _) = await FormTokenAsync(http, "chat");
        var refused = await http.PostAsync("chat/send", new FormUrlEncodedContent(
            [new("__RequestVerificationToken", token), new("agent", other.Name), new("message", "hi")]));
        Assert.Equal(HttpStatusCode.BadRequest, refused.StatusCode);
        Assert.Empty((await app.Client.ListRunsAsync(new RunQuery { AgentId = other.Id })).Items);
        var sent = await http.PostAsync("chat/send", new FormUrlEncodedContent(
            [new("__RequestVerificationToken", token), new("agent", own.Name), new("message", "hi")]));
        Assert.Equal(HttpStatusCode.Redirect, sent.StatusCode);

        // Without the filter every agent is shown (the default).
        await using var open = await AdminApp.StartAsync(db);
        using var anyone = open.HttpClient(tenant: acme);
        Assert.Contains(other.Name, await anyone.GetStringAsync("agents"), StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task ReadOnly_HidesEveryActionAndRefusesTheirRequests()
    {
        await using var app = await AdminApp.StartAsync(db, configure: o => o.ReadOnly = true);
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "ro_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await app.Client.NewSessionAsync();
        var run = await app.Client.RunFastAsync(session, agent.Id, "wait");
        using var http = app.HttpClient();

        foreach (var path in new[] { $"runs/{run}", $"chat/{session}", "chat" })
        {
            var html = await http.GetStringAsync(path);
            Assert.DoesNotContain("method=\"post\"", html, StringComparison.Ordinal);
        }

        var post = await http.PostAsync($"runs/{run}/cancel", new FormUrlEncodedContent([]));
        Assert.Equal(HttpStatusCode.Forbidden, post.StatusCode);
        Assert.Equal(RunState.Pending, (await app.Client.GetRunAsync(run)).State);
    }

    [DatabaseFact]
    public async Task BehindAPathBase_EveryLinkIncludesIt()
    {
        await using var app = await AdminApp.StartAsync(db, pathBase: "/proxy");
        using var http = app.HttpClient();

        var html = await http.GetStringAsync("runs");

        Assert.Contains("href=\"/proxy/agentpg/assets/admin.css\"", html, StringComparison.Ordinal);
        Assert.Contains("href=\"/proxy/agentpg/dashboard\"", html, StringComparison.Ordinal);
        Assert.DoesNotMatch("href=\"/agentpg/", html);
    }

    [Fact]
    public void MapAgentPgAdmin_WithoutItsServices_SaysWhatToCall()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Services.AddNpgsqlDataSource("Host=127.0.0.1");
        builder.Services.AddAgentPg(o => o.ApiKey = "test");
        using var app = builder.Build();

        var e = Assert.Throws<InvalidOperationException>(() => app.MapAgentPgAdmin());
        Assert.Contains("AddAgentPgAdmin", e.Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => app.MapAgentPgAdmin("agentpg"));
    }

    /// <summary>GETs a page and returns the antiforgery token of its forms (the cookie stays in the client).</summary>
    public static async Task<(string Token, string Html)> FormTokenAsync(HttpClient http, string path)
    {
        var html = await http.GetStringAsync(path);
        var match = TokenField().Match(html);
        Assert.True(match.Success, $"no antiforgery field on {path}");
        return (WebUtility.HtmlDecode(match.Groups[1].Value), html);
    }

    [GeneratedRegex("name=\"__RequestVerificationToken\" value=\"([^\"]+)\"")]
    private static partial Regex TokenField();

    [GeneratedRegex("Completed, last 24 hours</span><span class=\"value\">1</span>")]
    private static partial Regex CompletedCard();
}
