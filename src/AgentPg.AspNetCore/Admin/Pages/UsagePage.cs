using System.Globalization;

namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>Tokens and cost over a period (<see cref="AgentPgClient.GetUsageAsync"/>), grouped by one or two keys, with the
/// tokens per day as a chart: what the tenant's agents spent, and on what.</summary>
internal static class UsagePage
{
    private static readonly (string Value, string Label, int Days)[] s_periods =
        [("24h", "Last 24 hours", 1), ("7d", "Last 7 days", 7), ("30d", "Last 30 days", 30), ("90d", "Last 90 days", 90)];

    private static readonly (string Value, string Label)[] s_groupings =
        [("agent", "agent"), ("model", "model"), ("day", "day"), ("mode", "run mode"), ("source", "runs or compaction")];

    public static async Task<IResult> RenderAsync(AdminRequest r)
    {
        var periodText = r.Query("period") ?? "7d";
        var period = s_periods.FirstOrDefault(p => p.Value == periodText);
        if (period.Value is null)
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest, $"'{periodText}' is not a period (24h, 7d, 30d or 90d).");
        }

        var groupText = r.Query("group") ?? "agent";
        var thenText = r.Query("then");
        var groups = new List<UsageGrouping> { Grouping(groupText) };
        if (thenText is not null)
        {
            groups.Add(Grouping(thenText));
        }

        var agentId = r.OptionalId("agent", "agent");
        var model = r.Query("model");
        var until = r.Now;
        var since = until.AddDays(-period.Days);
        var query = new UsageQuery { Since = since, Until = until, SessionMetadata = r.Tenant, AgentId = agentId, Model = model, GroupBy = groups };
        var report = await UsageAsync(r, query).ConfigureAwait(false);
        // The chart: the same filters, by day, every day of the period present (a day without calls has no row).
        var daily = await UsageAsync(r, query with { GroupBy = [UsageGrouping.Day] }).ConfigureAwait(false);

        var choices = await r.AgentsAsync().ConfigureAwait(false);
        var total = report.Total;
        // Server tools billed per use get a column and a card when the calls used any (as agentpg usage shows them).
        var serverTools = total.WebSearchRequests + total.WebFetchRequests > 0;
        var content = Html.Of($"""
            <p class="tabs">{s_periods.Select(p => Html.Of($"""<a href="{r.Url($"/usage?period={p.Value}")}"{Html.When(p.Value == period.Value, Html.Trusted(" class=\"active\""))}>{p.Label}</a>"""))}</p>
            <form method="get" class="filters">
            <input type="hidden" name="period" value="{period.Value}">
            <label>Group by <select name="group">{GroupOptions(groupText)}</select></label>
            <label>then by <select name="then"><option value="">nothing</option>{GroupOptions(thenText)}</select></label>
            <label>Agent <select name="agent"><option value="">any</option>{choices.Select(a => AdminPages.Option(a.Id.ToString(), a.Name, agentId?.ToString()))}</select></label>
            <label>Model <input name="model" value="{model}" placeholder="any model" size="24"></label>
            <button type="submit">Show</button>
            </form>
            <section class="cards">
            <div class="card"><span class="label">Cost, {period.Label.ToLowerInvariant()}</span><span class="value" data-usage-cost>{Cost(total.Cost)}</span>{Html.When(total.Cost is { } c && total.CostWithoutDiscounts is { } full && full > c, Html.Of($"""<span class="label">{Cost(total.CostWithoutDiscounts)} without prompt caching and batches</span>"""))}</div>
            <div class="card"><span class="label">Model calls</span><span class="value">{AdminPages.Tokens(total.ModelCalls)}</span><span class="label">{AdminPages.Tokens(total.BatchModelCalls)} in batches</span></div>
            <div class="card"><span class="label">Runs</span><span class="value">{AdminPages.Tokens(total.Runs)}</span></div>
            <div class="card"><span class="label">Input tokens</span><span class="value">{AdminPages.Tokens(Input(total))}</span><span class="label">{CacheShare(total)}</span></div>
            <div class="card"><span class="label">Output tokens</span><span class="value">{AdminPages.Tokens(total.OutputTokens)}</span></div>
            {Html.When(serverTools, Html.Of($"""<div class="card"><span class="label">Web searches</span><span class="value" data-usage-web-searches>{AdminPages.Tokens(total.WebSearchRequests)}</span><span class="label">{AdminPages.Tokens(total.WebFetchRequests)} web fetches</span></div>"""))}
            </section>
            {Html.When(report.UnpricedModels.Count > 0, Html.Of($"""<p class="notice" data-unpriced>No price for {string.Join(", ", report.UnpricedModels)}: their calls are not in the cost. Set <code>AgentPgOptions.ModelPrices</code> (see the usage guide).</p>"""))}
            <section class="charts">{Charts.DailyBars(Days(daily.Rows, since, until), $"Tokens per day, {period.Label.ToLowerInvariant()}")}</section>
            <table class="usage"><thead><tr>{groups.Select(g => Html.Of($"<th>{Heading(g)}</th>"))}<th class="num">Calls</th><th class="num">Runs</th><th class="num">Input, uncached</th><th class="num">Cache writes (1 h)</th><th class="num">Cache reads</th><th class="num">Output</th>{Html.When(serverTools, Html.Trusted("<th class=\"num\">Web searches (fetches)</th>"))}<th class="num">Cost</th></tr></thead>
            <tbody>{Ordered(report.Rows, groups).Select(row => Row(r, row, groups, serverTools))}</tbody></table>
            {Html.When(report.Rows.Count == 0, Html.Trusted("<p class=\"muted\">No model calls in this period.</p>"))}
            """);
        return AdminPages.Page(r, "Usage", content);
    }

    // A grouping from the query string; one the client refuses (an unknown name, metadata: without a key) is a 400.
    private static UsageGrouping Grouping(string text)
    {
        try
        {
            return UsageGrouping.Parse(text);
        }
        catch (ArgumentException e)
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest, e.Message);
        }
    }

    private static async Task<UsageReport> UsageAsync(AdminRequest r, UsageQuery query)
    {
        try
        {
            return await r.Client.GetUsageAsync(query, r.Aborted).ConfigureAwait(false);
        }
        catch (ArgumentException e)
        {
            // The same grouping twice, or a filter from the query string the client refuses.
            throw new AdminHttpException(StatusCodes.Status400BadRequest, e.Message);
        }
    }

    private static IEnumerable<Html> GroupOptions(string? selected)
    {
        var options = s_groupings.Select(g => AdminPages.Option(g.Value, g.Label, selected));
        // A metadata grouping (metadata:tenant_id) is typed in the address: keep it selectable once it is there.
        return selected is not null && selected.StartsWith("metadata:", StringComparison.Ordinal)
            ? options.Append(AdminPages.Option(selected, selected, selected))
            : options;
    }

    private static string Heading(UsageGrouping g) => g.Kind switch
    {
        UsageGroupKind.Day => "Day (UTC)",
        UsageGroupKind.Agent => "Agent",
        UsageGroupKind.Model => "Model",
        UsageGroupKind.RunMode => "Mode",
        UsageGroupKind.Source => "Source",
        _ => g.MetadataKey!,
    };

    // Days in order; everything else by cost, then tokens, the largest first (what to look at first).
    private static IEnumerable<UsageRow> Ordered(IReadOnlyList<UsageRow> rows, List<UsageGrouping> groups)
        => groups[0].Kind == UsageGroupKind.Day
            ? rows.OrderBy(x => x.Day).ThenByDescending(x => x.Cost ?? -1).ThenByDescending(Input)
            : rows.OrderByDescending(x => x.Cost ?? -1).ThenByDescending(x => Input(x) + x.OutputTokens);

    private static Html Row(AdminRequest r, UsageRow row, List<UsageGrouping> groups, bool serverTools)
        => Html.Of($"""
            <tr>{groups.Select(g => Html.Of($"<td>{Key(r, row, g)}</td>"))}<td class="num">{AdminPages.Tokens(row.ModelCalls)}</td><td class="num">{AdminPages.Tokens(row.Runs)}</td>
            <td class="num">{AdminPages.Tokens(row.InputTokens)}</td><td class="num">{AdminPages.Tokens(row.CacheCreationInputTokens)} ({AdminPages.Tokens(row.CacheCreation1hInputTokens)})</td>
            <td class="num">{AdminPages.Tokens(row.CacheReadInputTokens)}</td><td class="num">{AdminPages.Tokens(row.OutputTokens)}</td>{Html.When(serverTools, Html.Of($"""<td class="num">{AdminPages.Tokens(row.WebSearchRequests)} ({AdminPages.Tokens(row.WebFetchRequests)})</td>"""))}<td class="num">{Cost(row.Cost)}</td></tr>
            """);

    private static Html Key(AdminRequest r, UsageRow row, UsageGrouping g) => g.Kind switch
    {
        UsageGroupKind.Day => Html.Of($"{row.Day?.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture)}"),
        // Compaction summaries belong to no agent.
        UsageGroupKind.Agent => row.AgentId is { } id
            ? Html.Of($"""<a href="{r.Url($"/runs?agent={id}")}">{row.AgentName ?? AdminPages.Short(id)}</a>""")
            : Html.Trusted("<span class=\"muted\">no agent (compaction)</span>"),
        UsageGroupKind.Model => Html.Of($"<code>{row.Model}</code>"),
        UsageGroupKind.RunMode => Html.Of($"{(row.Mode == RunMode.Batch ? "batch" : row.Mode == RunMode.Streaming ? "streaming" : "—")}"),
        UsageGroupKind.Source => Html.Of($"{(row.Source == UsageSource.Compaction ? "compaction" : "runs")}"),
        _ => row.SessionMetadata.GetValueOrDefault(g.MetadataKey!) is { } value ? Html.Of($"{value}") : Html.Trusted("<span class=\"muted\">none</span>"),
    };

    private static long Input(UsageRow row) => row.InputTokens + row.CacheCreationInputTokens + row.CacheReadInputTokens;

    private static string CacheShare(UsageRow row)
        => Input(row) == 0 ? "none cached" : $"{100.0 * row.CacheReadInputTokens / Input(row):0.#} % read from the cache";

    private static string Cost(decimal? cost) => cost is { } c ? c.ToString("$#,0.00##", CultureInfo.InvariantCulture) : "—";

    // One bar per UTC day of the period, a day without calls at zero.
    private static List<(DateTimeOffset Day, long Input, long Output)> Days(IReadOnlyList<UsageRow> rows, DateTimeOffset since, DateTimeOffset until)
    {
        var byDay = rows.Where(x => x.Day is not null).ToDictionary(x => x.Day!.Value);
        var days = new List<(DateTimeOffset, long, long)>();
        for (var day = DateOnly.FromDateTime(since.UtcDateTime); day <= DateOnly.FromDateTime(until.UtcDateTime); day = day.AddDays(1))
        {
            var row = byDay.GetValueOrDefault(day);
            days.Add((new DateTimeOffset(day.ToDateTime(TimeOnly.MinValue), TimeSpan.Zero), row is null ? 0 : Input(row), row?.OutputTokens ?? 0));
        }

        return days;
    }
}
