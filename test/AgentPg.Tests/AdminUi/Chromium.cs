using Microsoft.Playwright;

namespace AgentPg.Tests.AdminUi;

/// <summary>One headless Debian chromium per test class, driven by Playwright (never a downloaded browser): the path comes from
/// <c>AGENTPG_CHROMIUM</c> or <c>/usr/bin/chromium</c>, which <c>./build.sh test</c> installs from Debian's packages.</summary>
public sealed class Chromium : IAsyncLifetime
{
    private IPlaywright? _playwright;

    public IBrowser Browser { get; private set; } = null!;

    public static string ExecutablePath => Environment.GetEnvironmentVariable("AGENTPG_CHROMIUM") is { Length: > 0 } path ? path : "/usr/bin/chromium";

    public async Task InitializeAsync()
    {
        if (!File.Exists(ExecutablePath))
        {
            throw new InvalidOperationException(
                $"Chromium is not installed at {ExecutablePath}: run the tests with ./build.sh test (it installs Debian's chromium), " +
                "or install it (apt-get install chromium) or set AGENTPG_CHROMIUM.");
        }

        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = ExecutablePath,
            Headless = true,
            // The machine's network is closed: keep chromium from reaching out at start (updates, sync, field trials).
            Args = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"],
        });
    }

    /// <summary>A page for a user of a tenant, recording console errors and uncaught page errors.</summary>
    public async Task<(IPage Page, List<string> Errors)> PageAsync(string user = "admin", string? tenant = null)
    {
        var headers = new Dictionary<string, string> { [AdminApp.UserHeader] = user };
        if (tenant is not null)
        {
            headers[AdminApp.TenantHeader] = tenant;
        }

        var context = await Browser.NewContextAsync(new BrowserNewContextOptions { ExtraHTTPHeaders = headers, ViewportSize = new ViewportSize { Width = 1280, Height = 900 } });
        var page = await context.NewPageAsync();
        var errors = new List<string>();
        page.Console += (_, message) =>
        {
            if (message.Type == "error")
            {
                lock (errors)
                {
                    errors.Add($"console: {message.Text}");
                }
            }
        };
        page.PageError += (_, error) =>
        {
            lock (errors)
            {
                errors.Add($"page error: {error}");
            }
        };
        return (page, errors);
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.DisposeAsync();
        }

        _playwright?.Dispose();
    }

    /// <summary>Where screenshots for the README go: artifacts/screenshots at the repository root.</summary>
    public static string ScreenshotPath(string name)
    {
        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "AgentPg.slnx")))
        {
            directory = directory.Parent;
        }

        var folder = Path.Combine(directory?.FullName ?? AppContext.BaseDirectory, "artifacts", "screenshots");
        Directory.CreateDirectory(folder);
        return Path.Combine(folder, name);
    }
}
