namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>Runs by state, the queue, throughput and tokens over the last hour or day, instances and recent failures.</summary>
internal static class DashboardPage
{
    public static async Task<IResult> RenderAsync(AdminRequest r)
    {
        var day = r.Query("window") != "hour";
        var (window, bucket) = day ? (TimeSpan.FromDays(1), TimeSpan.FromHours(1)) : (TimeSpan.FromHours(1), TimeSpan.FromMinutes(5));
        var statistics = await r.Client.GetRunStatisticsAsync(window, bucket, r.Tenant, r.Aborted).ConfigureAwait(false);
        // Failures of the window only: the list then reads one range of the created_at index, however rare failures are.
        var failures = await r.Client.ListRunsAsync(
            new RunQuery { States = [RunState.Failed], CreatedAfter = statistics.Since, SessionMetadata = r.Tenant, Limit = 10 }, r.Aborted).ConfigureAwait(false);
        var instances = await r.Client.ListInstancesAsync(r.Aborted).ConfigureAwait(false);

        var created = statistics.CreatedByState;
        var finished = statistics.Buckets;
        var tokens = finished.Aggregate(new Usage(), (sum, b) => new Usage
        {
            InputTokens = sum.InputTokens + b.Usage.InputTokens,
            OutputTokens = sum.OutputTokens + b.Usage.OutputTokens,
            CacheReadInputTokens = sum.CacheReadInputTokens + b.Usage.CacheReadInputTokens,
            CacheCreationInputTokens = sum.CacheCreationInputTokens + b.Usage.CacheCreationInputTokens,
        });
        var completed = finished.Sum(b => b.Completed);
        var failed = finished.Sum(b => b.Failed);
        var windowLabel = day ? "last 24 hours" : "last hour";
        var leader = instances.FirstOrDefault(i => i.IsLeader);

        var queueRows = statistics.Queue.OrderBy(q => q.Mode).ThenBy(q => q.State).Select(q => Html.Of(
            $"""<tr><td>{(q.Mode == RunMode.Batch ? "batch" : "streaming")}</td><td>{AdminPages.StateBadge(q.State)}</td><td class="num">{q.Count}</td></tr>"""));
        var stateRows = created.OrderBy(kv => kv.Key).Select(kv => Html.Of(
            $"""<tr><td>{AdminPages.StateBadge(kv.Key)}</td><td class="num">{kv.Value}</td></tr>"""));
        var failureRows = failures.Items.Select(run => Html.Of(
            $"""<tr><td>{AdminPages.RunLink(r, run.Id)}</td><td>{AdminPages.Time(run.FinalizedAt)}</td><td>{run.ErrorType}</td><td class="clip">{run.ErrorMessage}</td></tr>"""));

        var content = Html.Of($"""
            <p class="tabs"><a href="{r.Url("/dashboard?window=hour")}"{Html.When(!day, Html.Trusted(" class=\"active\""))}>Last hour</a>
            <a href="{r.Url("/dashboard?window=day")}"{Html.When(day, Html.Trusted(" class=\"active\""))}>Last 24 hours</a></p>
            <div data-refresh="5000">
            <section class="cards">
            <div class="card"><span class="label">In the queue now</span><span class="value">{statistics.Queue.Sum(q => q.Count)}</span></div>
            <div class="card"><span class="label">Completed, {windowLabel}</span><span class="value">{completed}</span></div>
            <div class="card"><span class="label">Failed, {windowLabel}</span><span class="value">{failed}</span></div>
            <div class="card"><span class="label">Success rate</span><span class="value">{(completed + failed == 0 ? "—" : $"{100.0 * completed / (completed + failed):0.#} %")}</span></div>
            <div class="card"><span class="label">Tokens in / out</span><span class="value">{AdminPages.Tokens(tokens.InputTokens + tokens.CacheReadInputTokens + tokens.CacheCreationInputTokens)} / {AdminPages.Tokens(tokens.OutputTokens)}</span></div>
            <div class="card"><span class="label">Instances</span><span class="value">{instances.Count}</span><span class="label">leader: {leader?.Name ?? "none"}</span></div>
            </section>
            <section class="charts">
            {Charts.StackedBars(finished, $"Runs by outcome, {windowLabel}", ("c-completed", "completed", b => b.Completed), ("c-failed", "failed", b => b.Failed), ("c-cancelled", "cancelled", b => b.Cancelled))}
            {Charts.StackedBars(finished, $"Tokens, {windowLabel}", ("c-input", "input", b => b.Usage.InputTokens + b.Usage.CacheReadInputTokens + b.Usage.CacheCreationInputTokens), ("c-output", "output", b => b.Usage.OutputTokens))}
            </section>
            <section class="columns">
            <div><h2>Queue</h2><table><thead><tr><th>Mode</th><th>State</th><th class="num">Runs</th></tr></thead><tbody>{queueRows}</tbody></table>{Html.When(statistics.Queue.Count == 0, Html.Trusted("<p class=\"muted\">Nothing waiting or in progress.</p>"))}</div>
            <div><h2>Runs created, {windowLabel}, by state</h2><table><tbody>{stateRows}</tbody></table>{Html.When(created.Count == 0, Html.Trusted("<p class=\"muted\">No runs.</p>"))}</div>
            </section>
            <h2>Failures, {windowLabel}</h2>
            <table><thead><tr><th>Run</th><th>Failed at</th><th>Type</th><th>Error</th></tr></thead><tbody>{failureRows}</tbody></table>
            {Html.When(failures.Items.Count == 0, Html.Trusted("<p class=\"muted\">No failed runs in this window.</p>"))}
            </div>
            """);
        return AdminPages.Page(r, "Dashboard", content);
    }
}
