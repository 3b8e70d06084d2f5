using System.Net;
using System.Text.RegularExpressions;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Microsoft.Playwright;

namespace AgentPg.Tests.AdminUi;

/// <summary>The Usage page: the tenant's model calls summed by the groupings of the address, priced at the client's
/// <see cref="AgentPgOptions.ModelPrices"/>, every value from the data encoded, and a bad address a 400.</summary>
public sealed partial class AdminUsageTests(SchemaFixture db, Chromium chromium) : IClassFixture<SchemaFixture>, IClassFixture<Chromium>
{
    private const string Sonnet = "claude-sonnet-4-5";
    private const string Haiku = "claude-haiku-4-5";
    private const string Unpriced = "claude-opus-4-5";

    private const string SearchPrompt = "search the web";

    // Every call reports the same tokens: 1 000 in, 100 out, nothing cached; a call for SearchPrompt also 3 web searches and 2
    // web fetches (usage.server_tool_use).
    private static FakeReply Reply(FakeRequest request)
        => FakeReply.Text("ok") with
        {
            Usage = new FakeUsage
            {
                InputTokens = 1000, OutputTokens = 100, CacheCreationInputTokens = 0, CacheReadInputTokens = 0,
                WebSearchRequests = request.LastUserText == SearchPrompt ? 3 : 0, WebFetchRequests = request.LastUserText == SearchPrompt ? 2 : 0,
            },
        };

    private static async Task<(AdminApp App, FakeClaudeServer Claude)> StartAsync(SchemaFixture db)
    {
        var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = Reply });
        var app = await AdminApp.StartAsync(db, claude, worker: true, options: o => o.ModelPrices = new Dictionary<string, ModelPrice>
        {
            [Sonnet] = new(3m, 15m, 3.75m, 6m, 0.3m),
            [Haiku] = new(1m, 5m, 1.25m, 2m, 0.1m),
        });
        return (app, claude);
    }

    private static async Task<Guid> AgentAsync(AdminApp app, string model)
        => (await app.Client.CreateAgentAsync(new AgentDefinition { Name = "usage_" + Guid.NewGuid().ToString("N")[..10], Model = model })).Id;

    private static async Task RunsAsync(AdminApp app, Guid agent, Dictionary<string, object?> metadata, int count, string prompt = "how much?")
    {
        var session = await app.Client.NewSessionAsync(metadata: metadata);
        for (var i = 0; i < count; i++)
        {
            await app.Client.RunFastSyncAsync(session, agent, prompt);
        }
    }

    // The table row whose first cell holds the text (an agent's name, a model, a metadata value as the page encodes it).
    private static string Row(string html, string key)
    {
        var rows = TableRow().Matches(html).Select(m => m.Value).Where(row => row.Contains(key, StringComparison.Ordinal)).ToList();
        Assert.True(rows.Count == 1, $"one row of the usage table holds '{key}', found {rows.Count}");
        return rows[0];
    }

    private static List<string> Cells(string row) => Cell().Matches(row).Select(m => m.Groups[1].Value).ToList();

    [DatabaseFact]
    public async Task ByAgent_SumsTheTenantsCallsAndPricesThem_AndCountsNoOtherTenants()
    {
        var (app, claude) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        var (tenant, other) = ("u-" + Guid.NewGuid().ToString("N")[..8], "v-" + Guid.NewGuid().ToString("N")[..8]);
        var sonnet = await AgentAsync(app, Sonnet);
        var haiku = await AgentAsync(app, Haiku);
        await RunsAsync(app, sonnet, new() { ["tenant"] = tenant }, 2);
        await RunsAsync(app, haiku, new() { ["tenant"] = tenant }, 1);
        await RunsAsync(app, sonnet, new() { ["tenant"] = other }, 3);
        var sonnetName = (await app.Client.GetAgentByIdAsync(sonnet)).Name;
        var haikuName = (await app.Client.GetAgentByIdAsync(haiku)).Name;
        using var http = app.HttpClient(tenant: tenant);

        var html = await http.GetStringAsync("usage");

        // Agent | calls | runs | input | cache writes (1 h) | cache reads | output | cost. Sonnet: 2 × (1 000 × $3 + 100 × $15) / 1M.
        Assert.Equal(["2", "2", "2,000", "0 (0)", "0", "200", "$0.009"], Cells(Row(html, sonnetName))[1..]);
        Assert.Equal(["1", "1", "1,000", "0 (0)", "0", "100", "$0.0015"], Cells(Row(html, haikuName))[1..]);
        Assert.Contains("<span class=\"value\" data-usage-cost>$0.0105</span>", html, StringComparison.Ordinal);
        Assert.DoesNotContain("data-unpriced", html, StringComparison.Ordinal);

        // The other tenant sees its own three calls only; by model then by day, one row for today.
        var theirs = await app.HttpClient(tenant: other).GetStringAsync("usage?period=24h&group=model&then=day");
        var row = Cells(Row(theirs, $"<code>{Sonnet}</code>"));
        var last = (await app.Client.ListRunsAsync(new RunQuery { AgentId = sonnet, SessionMetadata = new Dictionary<string, object?> { ["tenant"] = other }, Limit = 1 })).Items[0];
        Assert.Equal(last.FinalizedAt!.Value.UtcDateTime.ToString("yyyy-MM-dd", System.Globalization.CultureInfo.InvariantCulture), row[1]);
        Assert.Equal(["3", "3", "3,000"], row[2..5]);
        Assert.DoesNotContain(TableRow().Matches(theirs), m => m.Value.Contains(Haiku, StringComparison.Ordinal));
    }

    [DatabaseFact]
    public async Task WebSearchesAndFetches_HaveAColumnAndACard_AndTheSearchesArePriced()
    {
        var (app, claude) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        var tenant = "s-" + Guid.NewGuid().ToString("N")[..8];
        var sonnet = await AgentAsync(app, Sonnet);
        var haiku = await AgentAsync(app, Haiku);
        await RunsAsync(app, sonnet, new() { ["tenant"] = tenant }, 2, SearchPrompt);
        await RunsAsync(app, haiku, new() { ["tenant"] = tenant }, 1);
        var sonnetName = (await app.Client.GetAgentByIdAsync(sonnet)).Name;
        var haikuName = (await app.Client.GetAgentByIdAsync(haiku)).Name;
        using var http = app.HttpClient(tenant: tenant);

        var html = await http.GetStringAsync("usage");

        // Agent | calls | runs | input | cache writes (1 h) | cache reads | output | web searches (fetches) | cost. Sonnet:
        // 2 × (1 000 × $3 + 100 × $15) / 1M + 6 searches × $10 / 1 000 = $0.009 + $0.06.
        Assert.Contains("<th class=\"num\">Web searches (fetches)</th>", html, StringComparison.Ordinal);
        Assert.Equal(["2", "2", "2,000", "0 (0)", "0", "200", "6 (4)", "$0.069"], Cells(Row(html, sonnetName))[1..]);
        Assert.Equal(["1", "1", "1,000", "0 (0)", "0", "100", "0 (0)", "$0.0015"], Cells(Row(html, haikuName))[1..]);
        Assert.Contains("<span class=\"value\" data-usage-web-searches>6</span><span class=\"label\">4 web fetches</span>", html, StringComparison.Ordinal);
        Assert.Contains("<span class=\"value\" data-usage-cost>$0.0705</span>", html, StringComparison.Ordinal);

        // A tenant whose calls used no server tool gets neither the column nor the card, as before.
        var other = "t-" + Guid.NewGuid().ToString("N")[..8];
        await RunsAsync(app, haiku, new() { ["tenant"] = other }, 1);
        var plain = await app.HttpClient(tenant: other).GetStringAsync("usage");
        Assert.DoesNotContain("Web searches", plain, StringComparison.Ordinal);
        Assert.DoesNotContain("data-usage-web-searches", plain, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task AModelWithoutAPrice_IsNamedAndTheTotalHasNoCost_AndMetadataValuesAreEncoded()
    {
        var (app, claude) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        var tenant = "w-" + Guid.NewGuid().ToString("N")[..8];
        var opus = await AgentAsync(app, Unpriced);
        var sonnet = await AgentAsync(app, Sonnet);
        await RunsAsync(app, opus, new() { ["tenant"] = tenant, ["team"] = AdminSeed.Hostile }, 1);
        await RunsAsync(app, sonnet, new() { ["tenant"] = tenant, ["team"] = "red" }, 1);
        using var http = app.HttpClient(tenant: tenant);

        var html = await http.GetStringAsync("usage?group=metadata:team");

        Assert.Matches($"data-unpriced>No price for {Unpriced}:", html);
        Assert.Contains("<span class=\"value\" data-usage-cost>—</span>", html, StringComparison.Ordinal);
        // The team typed by someone is text on the page: its own row, unpriced, next to the priced one.
        Assert.DoesNotContain("<script>", html, StringComparison.Ordinal);
        Assert.DoesNotContain("<img", html, StringComparison.Ordinal);
        Assert.Equal("—", Cells(Row(html, "&lt;script&gt;"))[^1]);
        Assert.Equal("$0.0045", Cells(Row(html, ">red<"))[^1]);
        // The grouping typed in the address stays selected, encoded like any value.
        var hostileKey = await http.GetStringAsync("usage?group=" + Uri.EscapeDataString("metadata:<b>k</b>"));
        Assert.DoesNotContain("<b>k</b>", hostileKey, StringComparison.Ordinal);
        Assert.Contains("<th>&lt;b&gt;k&lt;/b&gt;</th>", hostileKey, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task InTheBrowser_ChoosingAGrouping_ShowsItsRowsAndTheDailyChart()
    {
        var (app, claude) = await StartAsync(db);
        await using var _ = app;
        await using var __ = claude;
        var tenant = "b-" + Guid.NewGuid().ToString("N")[..8];
        await RunsAsync(app, await AgentAsync(app, Haiku), new() { ["tenant"] = tenant }, 1, SearchPrompt);
        var (page, errors) = await chromium.PageAsync(tenant: tenant);

        await page.GotoAsync(new Uri(app.Root, "usage").ToString());
        await page.ClickAsync("nav a:has-text('Usage')");
        await page.SelectOptionAsync("select[name=group]", "model");
        await page.ClickAsync("button:has-text('Show')");
        await page.WaitForURLAsync(url => url.Contains("group=model", StringComparison.Ordinal));

        Assert.Equal("Model", await page.TextContentAsync("table.usage th >> nth=0"));
        Assert.Equal(Haiku, await page.InnerTextAsync("table.usage tbody td >> nth=0"));
        // The call's web searches and fetches: a column of the table and a card.
        Assert.Equal("Web searches (fetches)", await page.TextContentAsync("table.usage th >> nth=7"));
        Assert.Equal("3 (2)", await page.InnerTextAsync("table.usage tbody td >> nth=7"));
        Assert.True(await page.IsVisibleAsync("[data-usage-web-searches]"), "the web searches card is shown");
        // A slot for each day of the last seven and today; only the day of the call has bars: its input and output, stacked.
        Assert.Equal(2, await page.Locator("figure.chart svg rect").CountAsync());
        await page.ScreenshotAsync(new PageScreenshotOptions { Path = Chromium.ScreenshotPath("usage.png"), FullPage = true });
        Assert.Empty(errors);
    }

    [DatabaseFact]
    public async Task ABadAddress_Is400WithWhatToFix()
    {
        await using var app = await AdminApp.StartAsync(db);
        using var http = app.HttpClient(tenant: "x-" + Guid.NewGuid().ToString("N")[..8]);

        foreach (var (path, message) in new[]
                 {
                     ("usage?period=1y", "not a period"),
                     ("usage?group=colour", "not a usage grouping"),
                     ("usage?group=metadata:", "names its key"),
                     ("usage?group=agent&then=agent", "at most two different groupings"),
                     ("usage?agent=nope", "not a valid agent id"),
                 })
        {
            var response = await http.GetAsync(path);
            var html = await response.Content.ReadAsStringAsync();
            Assert.True(response.StatusCode == HttpStatusCode.BadRequest, $"GET {path} → {(int)response.StatusCode}, expected 400");
            Assert.Contains(message, WebUtility.HtmlDecode(html), StringComparison.Ordinal);
        }
    }

    [GeneratedRegex(@"<tr><td>.*?</tr>", RegexOptions.Singleline)]
    private static partial Regex TableRow();

    [GeneratedRegex(@"<td[^>]*>(.*?)</td>", RegexOptions.Singleline)]
    private static partial Regex Cell();
}
