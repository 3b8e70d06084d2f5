using System.Net;
using System.Security.Claims;
using System.Text.Encodings.Web;
using AgentPg.AspNetCore;
using AgentPg.Testing;
using AgentPg.Tests.Hosting;
using AgentPg.Tests.Infrastructure;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace AgentPg.Tests.AdminUi;

/// <summary>A real ASP.NET Core app on 127.0.0.1 with AgentPg and its admin UI mounted, as an application wires them. Requests
/// authenticate with the <c>X-Test-User</c> header (and get the <c>X-Test-Tenant</c> claim), so tests and the browser can act
/// as different users and tenants.</summary>
public sealed class AdminApp : IAsyncDisposable
{
    public const string UserHeader = "X-Test-User";
    public const string TenantHeader = "X-Test-Tenant";

    private readonly WebApplication _app;

    private AdminApp(WebApplication app, Uri root)
    {
        _app = app;
        Root = root;
    }

    /// <summary>The UI's root, ending with '/': <c>http://127.0.0.1:port{pathBase}/agentpg/</c>.</summary>
    public Uri Root { get; }

    public AgentPgClient Client => _app.Services.GetRequiredService<AgentPgClient>();

    /// <summary>An <see cref="AgentPgAdminOptions.AgentFilter"/> by tenant, as the option's documentation suggests: an agent whose
    /// metadata names a tenant is seen only by requests with that <c>tenant</c> claim; an agent without one is shared.</summary>
    public static bool TenantAgentFilter(HttpContext http, AgentDefinition agent)
        => !agent.Metadata.TryGetValue("tenant", out var owner) || Equals(owner?.ToString(), http.User.FindFirst("tenant")?.Value);

    /// <summary>Starts the app. <paramref name="protect"/> false mounts the UI with no authorization requirement (deny by default
    /// applies); <paramref name="worker"/> also processes runs in this app; <paramref name="options"/> sets the client's options
    /// beyond the test defaults.</summary>
    public static async Task<AdminApp> StartAsync(SchemaFixture db, FakeClaudeServer? claude = null, Action<AgentPgAdminOptions>? configure = null,
        bool protect = true, bool worker = false, string? pathBase = null, Action<IAgentPgBuilder>? agentpgBuilder = null,
        Action<AgentPgOptions>? options = null)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(IPAddress.Loopback, 0));
        builder.Services.AddNpgsqlDataSource(TestDatabase.ConnectionString);
        var agentpg = builder.Services.AddAgentPg(HostFactory.Options(db, claude, options));
        if (worker)
        {
            agentpg.AddWorker();
        }

        agentpgBuilder?.Invoke(agentpg);

        builder.Services.AddAgentPgAdmin();
        builder.Services.AddAuthentication(HeaderAuthentication.SchemeName)
            .AddScheme<AuthenticationSchemeOptions, HeaderAuthentication>(HeaderAuthentication.SchemeName, null);
        builder.Services.AddAuthorization(o => o.AddPolicy("admins", p => p.RequireAuthenticatedUser()));
        var app = builder.Build();
        if (pathBase is not null)
        {
            app.UsePathBase(pathBase);
        }

        app.UseAuthentication();
        app.UseAuthorization();
        var ui = app.MapAgentPgAdmin("/agentpg", o =>
        {
            o.TenantFilter = http => http.User.FindFirst("tenant") is { } tenant ? new Dictionary<string, object?> { ["tenant"] = tenant.Value } : null;
            configure?.Invoke(o);
        });
        if (protect)
        {
            ui.RequireAuthorization("admins");
        }

        await app.StartAsync();
        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First().TrimEnd('/');
        return new AdminApp(app, new Uri($"{address}{pathBase}/agentpg/"));
    }

    /// <summary>An HTTP client for a user (or anonymous when <paramref name="user"/> is null) of a tenant, with cookies and
    /// without following redirects.</summary>
    public HttpClient HttpClient(string? user = "admin", string? tenant = null)
    {
        var http = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false, CookieContainer = new CookieContainer() }) { BaseAddress = Root };
        if (user is not null)
        {
            http.DefaultRequestHeaders.Add(UserHeader, user);
        }

        if (tenant is not null)
        {
            http.DefaultRequestHeaders.Add(TenantHeader, tenant);
        }

        return http;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private sealed class HeaderAuthentication(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder)
        : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
    {
        public const string SchemeName = "TestHeader";

        protected override Task<AuthenticateResult> HandleAuthenticateAsync()
        {
            if (Request.Headers[UserHeader].ToString() is not { Length: > 0 } user)
            {
                return Task.FromResult(AuthenticateResult.NoResult());
            }

            var claims = new List<Claim> { new(ClaimTypes.Name, user) };
            if (Request.Headers[TenantHeader].ToString() is { Length: > 0 } tenant)
            {
                claims.Add(new Claim("tenant", tenant));
            }

            return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(new ClaimsIdentity(claims, SchemeName)), SchemeName)));
        }
    }
}
