using System.CommandLine;
using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.Cookies;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg serve</c>: a worker instance plus the admin UI behind a one-time login token.</summary>
internal static class ServeCommand
{
    public static Command Create(CliGlobals globals)
    {
        var urls = new Option<string>("--urls") { Description = "Where the admin UI and /healthz listen.", DefaultValueFactory = _ => "http://127.0.0.1:5080" };
        var noUi = new Option<bool>("--no-ui") { Description = "Run the worker and /healthz only, without the admin UI." };
        var fake = new Option<bool>("--fake") { Description = "Answer with the bundled fake Claude (a demo model) when ANTHROPIC_API_KEY is unset, and register the demo tools get_weather and calculate. The worker claims every run it can: use it on a development database." };
        var command = new Command("serve", "Run a worker instance with the admin UI (at /agentpg, behind a one-time login token printed at start) and a health endpoint (/healthz), until Ctrl+C.");
        command.Options.Add(urls);
        command.Options.Add(noUi);
        command.Options.Add(fake);
        globals.SetAction(command, (parsed, context, cancellationToken) =>
            RunAsync(context, parsed.GetValue(urls)!, parsed.GetValue(noUi), parsed.GetValue(fake), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(CliContext context, string urls, bool noUi, bool fake, CancellationToken cancellationToken)
    {
        // Kestrel reads the same syntax only when it starts, and its FormatException would be exit code 1 with its type name.
        var listen = urls.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var address in listen.DefaultIfEmpty(""))
        {
            try
            {
                _ = BindingAddress.Parse(address);
            }
            catch (FormatException)
            {
                throw CliException.Usage($"--urls '{Format.Terminal(address)}' is not an address to listen on: give one or more URLs separated by ';', " +
                    "for example http://127.0.0.1:5080.");
            }
        }

        // Fails with the one-line "not migrated" error before anything listens.
        var version = await new AgentPgMigrator(context.DataSource, context.Schema).GetVersionAsync(cancellationToken).ConfigureAwait(false);
        if (version != AgentPgMigrator.LatestVersion)
        {
            throw new CliException(version == 0
                ? $"the AgentPg schema \"{context.Schema}\" on {context.DatabaseDescription} is not migrated: run 'agentpg migrate'."
                : $"the AgentPg schema \"{context.Schema}\" is at version {version}; this agentpg needs {AgentPgMigrator.LatestVersion} (agentpg migrate).");
        }

        var claude = await ClaudeEndpoint.StartAsync(fake).ConfigureAwait(false);
        await using var disposeClaude = claude.ConfigureAwait(false);
        var token = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(24));
        var tokenUsed = 0;

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [] });
        builder.WebHost.UseUrls(listen);
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true).SetMinimumLevel(context.Verbose ? LogLevel.Information : LogLevel.Warning);
        var agentPg = builder.Services.AddAgentPg(o =>
            {
                o.Schema = context.Schema;
                o.InstanceName = "agentpg serve";
                claude.Configure(o);
            })
            .UseDataSource(_ => context.DataSource)
            .AddWorker();
        if (claude.DemoTools)
        {
            foreach (var tool in DemoTools.All)
            {
                agentPg.AddTool(tool);
            }
        }

        builder.Services.AddHealthChecks().AddAgentPg();
        builder.Services.AddAuthentication(CookieAuthenticationDefaults.AuthenticationScheme).AddCookie(o =>
        {
            o.Cookie.Name = "agentpg_serve";
            o.Cookie.HttpOnly = true;
            o.Cookie.SameSite = SameSiteMode.Strict;
            o.LoginPath = "/login";
            o.ExpireTimeSpan = TimeSpan.FromHours(12);
        });
        builder.Services.AddAuthorization();
        if (!noUi)
        {
            builder.Services.AddAgentPgAdmin();
        }

        var app = builder.Build();
        app.UseAuthentication();
        app.UseAuthorization();
        app.MapHealthChecks("/healthz");
        if (!noUi)
        {
            app.MapGet("/", () => Results.Redirect("/agentpg"));
            // The token printed at start signs one browser in: it works once, then only the cookie does.
            app.MapGet("/login", async (HttpContext http) =>
            {
                var given = Encoding.UTF8.GetBytes(http.Request.Query["token"].ToString());
                if (!CryptographicOperations.FixedTimeEquals(given, Encoding.UTF8.GetBytes(token)) || Interlocked.Exchange(ref tokenUsed, 1) != 0)
                {
                    return Results.Text("Sign in with the link agentpg serve printed at start. It works once; restart agentpg serve for a new one.",
                        statusCode: StatusCodes.Status401Unauthorized);
                }

                var identity = new ClaimsIdentity([new Claim(ClaimTypes.Name, "agentpg serve")], CookieAuthenticationDefaults.AuthenticationScheme);
                await http.SignInAsync(CookieAuthenticationDefaults.AuthenticationScheme, new ClaimsPrincipal(identity)).ConfigureAwait(false);
                return Results.Redirect("/agentpg");
            });
            app.MapAgentPgAdmin("/agentpg").RequireAuthorization();
        }

        await app.StartAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()?.Addresses ?? [];
            var client = app.Services.GetRequiredService<AgentPgClient>();
            var address = addresses.FirstOrDefault() ?? urls;
            context.WriteLine($"agentpg serve: worker instance {client.InstanceId} on schema \"{context.Schema}\" at {context.DatabaseDescription}");
            context.WriteLine($"Model:     {claude.Description}{(claude.DemoTools ? "; demo tools get_weather, calculate" : "")}");
            context.WriteLine($"Listening on {address}");
            context.WriteLine($"Health:    {address}/healthz");
            if (!noUi)
            {
                context.WriteLine($"Admin UI:  {address}/agentpg");
                context.WriteLine($"Sign in (once, this process only): {address}/login?token={token}");
            }

            context.WriteLine("Press Ctrl+C to stop (in-flight work is finished or released to other instances).");
            await context.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
            // Ctrl+C (or the caller's token) is the normal way to stop serving.
            await app.WaitForShutdownAsync(cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            await app.StopAsync(stopping.Token).ConfigureAwait(false);
            await app.DisposeAsync().ConfigureAwait(false);
        }

        context.WriteLine("agentpg serve: stopped.");
        return CliExitCodes.Success;
    }
}
