// The AgentPg admin UI in a web app, as an application mounts it: cookie sign-in, a tenant per user from the user's claims,
// and demo traffic from the bundled fake model so every page has something to show.
//
//   ./build.sh sample AdminUi            serves http://127.0.0.1:5080/ (sign in as ann or bob, password "demo")
//   ./build.sh sample AdminUi --urls http://127.0.0.1:6000
//   ./build.sh sample AdminUi --smoke    signs in, loads the dashboard and a run page, prints what it saw, exits
//
// ann sees tenant "acme" only, bob sees "globex" only: the UI filters every page, count and action by the tenant claim.

using System.Security.Claims;
using AgentPg;
using AgentPg.Testing;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;

var smoke = args.Contains("--smoke");
var builder = WebApplication.CreateBuilder(args.Where(a => a != "--smoke").ToArray());
if (builder.Configuration["urls"] is null)
{
    builder.WebHost.UseUrls(smoke ? "http://127.0.0.1:0" : "http://127.0.0.1:5080");
}

var connectionString = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION") is { Length: > 0 } fromEnvironment
    ? fromEnvironment
    : builder.Configuration.GetConnectionString("AgentPg") ?? throw new InvalidOperationException("Set AGENTPG_CONNECTION or ConnectionStrings:AgentPg.");

// Without an API key the sample talks to the bundled fake Claude, so it runs offline.
await using var fakeClaude = string.IsNullOrEmpty(Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY"))
    ? await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = FakeModels.Demo })
    : null;

builder.Services.AddNpgsqlDataSource(connectionString);
builder.Services.AddAgentPg(o =>
    {
        (o.ApiKey, o.BaseUrl) = fakeClaude is null ? (Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY"), null) : (fakeClaude.ApiKey, fakeClaude.BaseUrl);
        o.Schema = "agentpg_admin_sample";
        o.MigrateOnStart = true;
    })
    .AddWorker()
    .AddTool(FunctionTool.Create("lookup_order", "Looks up an order by its number.", (string order) => $"order {order}: 2 items, shipped"))
    .AddTool(FunctionTool.Create("issue_refund", "Refunds an order.", (string order) => $"refunded order {order}"))
    .AddAgent(new AgentDefinition
    {
        Name = "support",
        Model = "claude-sonnet-4-5",
        SystemPrompt = "You answer questions about orders. Look orders up with lookup_order; refund with issue_refund.",
        Tools = ["lookup_order", "issue_refund"],
        ToolsRequiringApproval = ["issue_refund"],
    });
builder.Services.AddAgentPgAdmin();
builder.Services.AddAuthentication(CookieAuthenticationDefaults.AuthenticationScheme)
    .AddCookie(o => (o.LoginPath, o.Cookie.Name) = ("/login", "agentpg_sample"));
builder.Services.AddAuthorizationBuilder().AddPolicy("operators", p => p.RequireAuthenticatedUser().RequireClaim("tenant"));
builder.Services.AddHostedService<DemoTraffic>();

var app = builder.Build();
app.UseAuthentication();
app.UseAuthorization();

// The two lines that matter: the UI, protected by a policy, scoped to the signed-in user's tenant.
app.MapAgentPgAdmin("/agentpg", o => o.TenantFilter = http => new Dictionary<string, object?> { ["tenant"] = http.User.FindFirstValue("tenant") })
    .RequireAuthorization("operators");

app.MapGet("/", () => Results.Redirect("/agentpg/"));
app.MapGet("/login", (HttpContext http) => Results.Content(Users.LoginPage(http.Request.Query["ReturnUrl"]), "text/html; charset=utf-8"));
app.MapPost("/login", async (HttpContext http) =>
{
    var form = await http.Request.ReadFormAsync();
    if (!Users.TryGetTenant(form["user"].ToString(), form["password"].ToString(), out var tenant))
    {
        return Results.Content(Users.LoginPage(null, failed: true), "text/html; charset=utf-8", statusCode: 401);
    }

    var identity = new ClaimsIdentity([new(ClaimTypes.Name, form["user"].ToString()), new("tenant", tenant)], CookieAuthenticationDefaults.AuthenticationScheme);
    await http.SignInAsync(new ClaimsPrincipal(identity));
    // Only a local path is followed after sign-in.
    var returnUrl = form["returnUrl"].ToString();
    return Results.Redirect(returnUrl.StartsWith('/') && !returnUrl.StartsWith("//", StringComparison.Ordinal) ? returnUrl : "/agentpg/");
}).DisableAntiforgery();

await app.StartAsync();
var address = app.Urls.First();
if (smoke)
{
    var code = await Smoke.RunAsync(address);
    await app.StopAsync();
    return code;
}

Console.WriteLine($"AgentPg admin UI: {address}/agentpg/  (sign in as ann or bob, password \"demo\"; Ctrl+C stops)");
await app.WaitForShutdownAsync();
return 0;
