using AgentPg.Tests.Infrastructure;
using Microsoft.Playwright;

namespace AgentPg.Tests.AdminUi;

/// <summary>The admin UI in a real browser (Debian's chromium through Playwright): pages render without console errors
/// (which includes Content-Security-Policy violations), hostile output never runs, and actions work from the page.</summary>
public sealed class AdminBrowserTests(SchemaFixture db, Chromium chromium) : IClassFixture<SchemaFixture>, IClassFixture<Chromium>
{
    [DatabaseFact]
    public async Task EveryPage_RendersWithoutConsoleErrorsAndRunsNoHostileOutput()
    {
        await using var app = await AdminApp.StartAsync(db);
        var seed = await AdminSeed.CreateAsync(db, app.Client, "p-" + Guid.NewGuid().ToString("N")[..8]);
        var (page, errors) = await chromium.PageAsync(tenant: seed.Tenant);

        var paths = new[]
        {
            "dashboard", "dashboard?window=hour", "usage", "usage?period=30d&group=day&then=model", "runs", $"runs/{seed.Run}", "sessions", $"sessions/{seed.Session}", "tool-executions",
            $"tool-executions/{seed.ToolExecution}", "agents", "instances", "compaction", $"compaction?session={seed.Session}", "chat", $"chat/{seed.Session}",
        };
        foreach (var path in paths)
        {
            var response = await page.GotoAsync(new Uri(app.Root, path).ToString());
            Assert.True(response?.Status == 200, $"{path}: HTTP {response?.Status}");
            await page.WaitForLoadStateAsync(LoadState.NetworkIdle);
            Assert.True(await page.EvaluateAsync<bool>("() => getComputedStyle(document.querySelector('header')).display === 'flex'"),
                $"{path}: the embedded stylesheet did not apply");
            Assert.Null(await page.EvaluateAsync<int?>("() => window.__pwned ?? null"));
            Assert.True(errors.Count == 0, $"{path}: {string.Join("; ", errors)}");
        }

        await page.GotoAsync(new Uri(app.Root, $"tool-executions/{seed.ToolExecution}").ToString());
        Assert.Contains("<script>window.__pwned = 1</script>", await page.InnerTextAsync("main"), StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Screenshots_OfDashboardRunDetailAndChat_AreSavedForTheReadme()
    {
        await using var app = await AdminApp.StartAsync(db);
        var seed = await AdminSeed.CreateAsync(db, app.Client, "s-" + Guid.NewGuid().ToString("N")[..8]);
        for (var i = 0; i < 12; i++)
        {
            var run = await db.Seed.RunAsync(seed.Session, seed.Agent);
            await db.Seed.FinishRunAsync(run, i % 5 == 0 ? "failed" : "completed", inputTokens: 500 + (i * 150), outputTokens: 100 + (i * 20));
        }

        var (page, errors) = await chromium.PageAsync(tenant: seed.Tenant);
        foreach (var (path, file) in new[] { ("dashboard?window=hour", "dashboard.png"), ($"runs/{seed.Run}", "run-detail.png"), ($"chat/{seed.Session}", "chat.png") })
        {
            await page.GotoAsync(new Uri(app.Root, path).ToString());
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = Chromium.ScreenshotPath(file), FullPage = true });
            Assert.True(new FileInfo(Chromium.ScreenshotPath(file)).Length > 10_000, $"{file} looks empty");
        }

        Assert.Empty(errors);
    }

    [DatabaseFact]
    public async Task StopButton_CancelsTheRunAndTheConversationOffersRegenerate()
    {
        await using var app = await AdminApp.StartAsync(db);
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "stop_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var session = await app.Client.NewSessionAsync();
        var run = await app.Client.RunFastAsync(session, agent.Id, "never answered: no worker runs in this app");
        var (page, errors) = await chromium.PageAsync();

        await page.GotoAsync(new Uri(app.Root, $"chat/{session}").ToString());
        await page.ClickAsync("button:has-text('Stop')");
        await page.WaitForSelectorAsync("button:has-text('Regenerate last response')");

        Assert.Equal(RunState.Cancelled, (await app.Client.GetRunAsync(run)).State);
        Assert.Empty(errors);
    }
}
