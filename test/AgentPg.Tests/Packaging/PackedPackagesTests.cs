using System.Diagnostics;
using System.IO.Compression;
using System.Text;
using System.Xml.Linq;
using AgentPg.Tests.Infrastructure;
using AgentPg.Tests.Mcp;

namespace AgentPg.Tests.Packaging;

/// <summary>Packs the libraries exactly as <c>./build.sh pack</c> does, then builds and runs a throwaway app that consumes every
/// library package from a local feed only (no project references) against the fake Claude, the test PostgreSQL and the test MCP
/// server: a file, a dependency or a framework reference missing from a package fails here.</summary>
/// <remarks>It runs alone (after the parallel tests): packing, restoring and building take both cores for a while and would
/// slow every timing-sensitive test running beside them.</remarks>
[Collection(nameof(PackedPackagesTests))]
public sealed class PackedPackagesTests
{
    [DatabaseFact]
    public async Task PackedPackages_ConsoleAppFromLocalFeed_RunsAnAgentEndToEnd()
    {
        var root = RepositoryRoot();
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        var work = Directory.CreateTempSubdirectory("agentpg-smoke-");
        try
        {
            var feed = Path.Combine(work.FullName, "feed");
            await RunAsync(root, "dotnet", "pack", Path.Combine(root, "AgentPg.slnx"), "--no-build", "-c", configuration, "-o", feed, "-nologo");

            var version = CheckPackages(feed);
            var app = Path.Combine(work.FullName, "app");
            Directory.CreateDirectory(app);
            WriteApp(app, feed, version);

            var output = await RunAsync(app, "dotnet", "run", "-c", "Release", "--", TestDatabase.ConnectionString, StdioTestServer.ServerPath());

            Assert.Contains("SMOKE OK sum=5,9", output, StringComparison.Ordinal);
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    /// <summary>The agentpg tool, packed as <c>./build.sh pack</c> does, installs with <c>dotnet tool install --add-source</c>
    /// from a local feed and runs: a tool package missing a dependency or its entry point fails here.</summary>
    [Fact]
    public async Task PackedTool_InstalledFromLocalFeed_RunsAgentpgVersion()
    {
        var root = RepositoryRoot();
        var configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;
        var work = Directory.CreateTempSubdirectory("agentpg-tool-");
        try
        {
            var feed = Path.Combine(work.FullName, "feed");
            await RunAsync(root, "dotnet", "pack", Path.Combine(root, "src", "AgentPg.Cli", "AgentPg.Cli.csproj"), "--no-build", "-c", configuration, "-o", feed, "-nologo");
            var version = XDocument.Load(Path.Combine(root, "Directory.Build.props")).Descendants("VersionPrefix").Single().Value;
            Assert.True(File.Exists(Path.Combine(feed, $"AgentPg.Cli.{version}.nupkg")), $"no AgentPg.Cli.{version}.nupkg in {feed}");

            var tools = Path.Combine(work.FullName, "tools");
            // A package folder of its own, so a stale AgentPg.Cli of the same version in the machine's cache is never installed.
            var environment = new Dictionary<string, string> { ["NUGET_PACKAGES"] = Path.Combine(work.FullName, "packages") };
            await RunAsync(work.FullName, environment, "dotnet", "tool", "install", "--tool-path", tools, "--add-source", feed, "--version", version, "AgentPg.Cli");
            var output = await RunAsync(work.FullName, Path.Combine(tools, OperatingSystem.IsWindows() ? "agentpg.exe" : "agentpg"), "--version");

            Assert.StartsWith(version, output.Trim(), StringComparison.Ordinal);
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    /// <summary>Every project under src/ is packed, and every package has its assembly, XML docs, README, icon, license expression
    /// and repository commit, and a symbol package next to it.</summary>
    private static string CheckPackages(string feed)
    {
        // The version lives in one place, the root Directory.Build.props, for every package.
        var version = XDocument.Load(Path.Combine(RepositoryRoot(), "Directory.Build.props")).Descendants("VersionPrefix").Single().Value;
        // Every project under src/ is a package, today's and each later one.
        var packages = Directory.GetDirectories(Path.Combine(RepositoryRoot(), "src")).Select(Path.GetFileName).OfType<string>()
            .Where(id => File.Exists(Path.Combine(RepositoryRoot(), "src", id, id + ".csproj"))).ToList();
        Assert.Contains("AgentPg.EntityFrameworkCore", packages);
        foreach (var id in packages)
        {
            Assert.True(File.Exists(Path.Combine(RepositoryRoot(), "src", id, "README.md")),
                $"src/{id} has no README.md: every package carries one (it becomes the package's readme on the feed).");
            var nupkg = Path.Combine(feed, $"{id}.{version}.nupkg");
            Assert.True(File.Exists(nupkg), $"{id}: no {Path.GetFileName(nupkg)} in {feed}: {string.Join(", ", Directory.GetFiles(feed).Select(Path.GetFileName))}");
            Assert.True(File.Exists(Path.ChangeExtension(nupkg, ".snupkg")), $"{id}: no symbol package next to {nupkg}");
            using var zip = ZipFile.OpenRead(nupkg);
            var entries = zip.Entries.Select(e => e.FullName).ToHashSet(StringComparer.Ordinal);
            if (!entries.Any(e => e.StartsWith("tools/", StringComparison.Ordinal)))
            {
                Assert.Contains($"lib/net10.0/{id}.dll", entries);
                Assert.Contains($"lib/net10.0/{id}.xml", entries);
            }

            Assert.Contains("README.md", entries);
            Assert.Contains("icon.png", entries);
            using var nuspecStream = zip.Entries.Single(e => e.FullName.EndsWith(".nuspec", StringComparison.Ordinal)).Open();
            var nuspec = XDocument.Load(nuspecStream);
            var ns = nuspec.Root!.GetDefaultNamespace();
            var metadata = nuspec.Root.Element(ns + "metadata")!;
            Assert.Equal("MIT", metadata.Element(ns + "license")?.Value);
            Assert.Equal("README.md", metadata.Element(ns + "readme")?.Value);
            Assert.Equal("icon.png", metadata.Element(ns + "icon")?.Value);
            Assert.False(string.IsNullOrEmpty(metadata.Element(ns + "repository")?.Attribute("commit")?.Value), $"{id}: no repository commit in the nuspec");
            Assert.False(string.IsNullOrEmpty(metadata.Element(ns + "description")?.Value), $"{id}: no description");
        }

        return version;
    }

    private static void WriteApp(string app, string feed, string version)
    {
        File.WriteAllText(Path.Combine(app, "nuget.config"), $"""
            <?xml version="1.0" encoding="utf-8"?>
            <configuration>
              <config>
                <!-- AgentPg's packages are restored into a folder of their own, so a stale copy of the same version in the
                     machine's package cache can never be used; every other package comes from that cache. -->
                <add key="globalPackagesFolder" value="{Path.Combine(app, "packages")}" />
              </config>
              <fallbackPackageFolders>
                <add key="machine" value="{MachinePackages()}" />
              </fallbackPackageFolders>
              <packageSources>
                <add key="local" value="{feed}" />
              </packageSources>
            </configuration>
            """);
        File.WriteAllText(Path.Combine(app, "Smoke.csproj"), $"""
            <Project Sdk="Microsoft.NET.Sdk">
              <PropertyGroup>
                <OutputType>Exe</OutputType>
                <TargetFramework>net10.0</TargetFramework>
                <Nullable>enable</Nullable>
                <ImplicitUsings>enable</ImplicitUsings>
                <ManagePackageVersionsCentrally>false</ManagePackageVersionsCentrally>
              </PropertyGroup>
              <ItemGroup>
                <PackageReference Include="AgentPg" Version="{version}" />
                <PackageReference Include="AgentPg.AspNetCore" Version="{version}" />
                <PackageReference Include="AgentPg.EntityFrameworkCore" Version="{version}" />
                <PackageReference Include="AgentPg.Mcp" Version="{version}" />
                <PackageReference Include="AgentPg.Testing" Version="{version}" />
                <PackageReference Include="Microsoft.Extensions.Hosting" Version="{PackageVersion("Microsoft.Extensions.Hosting")}" />
                <PackageReference Include="Npgsql.DependencyInjection" Version="{PackageVersion("Npgsql.DependencyInjection")}" />
              </ItemGroup>
            </Project>
            """);
        // No Directory.Build.props or Directory.Packages.props of the repository may leak into the app.
        File.WriteAllText(Path.Combine(app, "Directory.Build.props"), "<Project />");
        File.WriteAllText(Path.Combine(app, "Directory.Packages.props"), "<Project />");
        File.WriteAllText(Path.Combine(app, "Program.cs"), SmokeProgram);
    }

    /// <summary>The app: an ASP.NET Core host (the AspNetCore package brings its shared framework to a plain console project)
    /// with a worker, a function tool, an MCP server's tool (stdio), EF Core's transaction and the health check; one run calls
    /// both tools; the admin UI then shows the run and serves its embedded assets.</summary>
    private const string SmokeProgram = """
        using AgentPg;
        using AgentPg.AspNetCore;
        using AgentPg.Mcp;
        using AgentPg.Testing;
        using Microsoft.AspNetCore.Builder;
        using Microsoft.AspNetCore.Hosting;
        using Microsoft.AspNetCore.Hosting.Server;
        using Microsoft.AspNetCore.Hosting.Server.Features;
        using Microsoft.EntityFrameworkCore;
        using Microsoft.Extensions.DependencyInjection;
        using Microsoft.Extensions.Diagnostics.HealthChecks;
        using Microsoft.Extensions.Hosting;
        using Microsoft.Extensions.Logging;
        using Npgsql;

        var schema = "smoke_" + Guid.NewGuid().ToString("N")[..12];
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.Message(FakeContentBlock.ToolUse("add", new { a = 2, b = 3 }), FakeContentBlock.ToolUse("math__add", new { a = 4, b = 5 })) with { StopReason = "tool_use" }
            : FakeReply.Text("sum=" + string.Join(",", r.ToolResults.Select(t => t.Content))));

        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseUrls("http://127.0.0.1:0");
        builder.Services.AddNpgsqlDataSource(args[0]);
        builder.Services.AddDbContext<SmokeDb>((sp, o) => o.UseNpgsql(sp.GetRequiredService<NpgsqlDataSource>()));
        builder.Services.AddAgentPg(o =>
            {
                o.Schema = schema;
                o.MigrateOnStart = true;
                o.ApiKey = claude.ApiKey;
                o.BaseUrl = claude.BaseUrl;
                o.RunPollInterval = TimeSpan.FromMilliseconds(200);
                o.ToolPollInterval = TimeSpan.FromMilliseconds(100);
            })
            .AddWorker()
            .AddTool(FunctionTool.Create("add", "Adds two numbers.", (int a, int b) => a + b))
            .AddMcpServer(new McpServerOptions { Name = "math", Command = "dotnet", Arguments = [args[1]] })
            .AddAgent(new AgentDefinition { Name = "smoke", Model = "claude-sonnet-4-5", Tools = ["add", "math__add"] });
        builder.Services.AddHealthChecks().AddAgentPg();
        builder.Services.AddAgentPgAdmin();
        await using var app = builder.Build();
        app.MapAgentPgAdmin("/agentpg", o => o.AllowAnonymous = true);
        await app.StartAsync();
        try
        {
            var client = app.Services.GetRequiredService<AgentPgClient>();
            var agent = await client.GetAgentByNameAsync("smoke");
            Guid run;
            await using (var scope = app.Services.CreateAsyncScope())
            {
                var db = scope.ServiceProvider.GetRequiredService<SmokeDb>();
                await using var tx = await db.Database.BeginTransactionAsync();
                var session = await client.NewSessionAsync(db);
                run = await client.RunFastAsync(db, session, agent.Id, "What are 2 + 3 and 4 + 5?");
                await tx.CommitAsync();
            }

            using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
            var response = await client.WaitForRunAsync(run, timeout.Token);
            var health = await app.Services.GetRequiredService<HealthCheckService>().CheckHealthAsync();
            using var http = new HttpClient { BaseAddress = new Uri(app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First()) };
            var page = await http.GetStringAsync($"/agentpg/runs/{run}", timeout.Token);
            var stylesheet = await http.GetAsync("/agentpg/assets/admin.css", timeout.Token);
            if (response.Text != "sum=5,9" || health.Status != HealthStatus.Healthy || !page.Contains(run.ToString(), StringComparison.Ordinal)
                || !stylesheet.IsSuccessStatusCode)
            {
                Console.WriteLine($"SMOKE FAILED: answer '{response.Text}', health {health.Status}, run page has the run: "
                    + $"{page.Contains(run.ToString(), StringComparison.Ordinal)}, stylesheet {(int)stylesheet.StatusCode}");
                return 1;
            }

            Console.WriteLine("SMOKE OK " + response.Text);
            return 0;
        }
        finally
        {
            await app.StopAsync();
            await using var drop = app.Services.GetRequiredService<NpgsqlDataSource>().CreateCommand($"DROP SCHEMA \"{schema}\" CASCADE");
            await drop.ExecuteNonQueryAsync();
        }

        internal sealed class SmokeDb(DbContextOptions<SmokeDb> options) : DbContext(options);
        """;

    private static string PackageVersion(string id)
    {
        var props = XDocument.Load(Path.Combine(RepositoryRoot(), "Directory.Packages.props"));
        return props.Descendants("PackageVersion").Single(e => (string?)e.Attribute("Include") == id).Attribute("Version")!.Value;
    }

    private static string MachinePackages()
        => Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } packages
            ? packages
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");

    private static string RepositoryRoot()
    {
        // .../test/AgentPg.Tests/bin/<Configuration>/net10.0/
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "AgentPg.slnx")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("AgentPg.slnx not found above " + AppContext.BaseDirectory);
    }

    private static Task<string> RunAsync(string directory, string file, params string[] arguments)
        => RunAsync(directory, new Dictionary<string, string>(), file, arguments);

    private static async Task<string> RunAsync(string directory, IReadOnlyDictionary<string, string> environment, string file, params string[] arguments)
    {
        var info = new ProcessStartInfo(file) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in environment)
        {
            info.Environment[name] = value;
        }

        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromMinutes(8));
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"`{file} {string.Join(' ', arguments)}` did not finish within 8 minutes:\n{await stdout}\n{await stderr}");
        }

        var output = new StringBuilder().Append(await stdout).Append(await stderr).ToString();
        Assert.True(process.ExitCode == 0, $"`{file} {string.Join(' ', arguments)}` in {directory} exited with {process.ExitCode}:\n{output}");
        return output;
    }
}

[CollectionDefinition(nameof(PackedPackagesTests), DisableParallelization = true)]
public sealed class PackedPackagesRunAlone;
