namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>Worker instances: health from the heartbeat age, the leader, tools and (without a tenant filter) in-flight work.</summary>
internal static class InstancePages
{
    public static async Task<IResult> ListAsync(AdminRequest r)
    {
        var instances = await r.Client.ListInstancesAsync(r.Aborted).ConfigureAwait(false);
        // In-flight counts span every tenant: a tenant-filtered request does not see them.
        var showWork = r.Tenant is null;
        var rows = instances.Select(i => Html.Of($"""
            <tr><td><strong>{i.Name}</strong><div class="muted">{i.Id}</div></td><td><span class="badge health-{Health(r, i)}">{Health(r, i)}</span>{Html.When(i.IsLeader, Html.Trusted(" <span class=\"badge leader\">leader</span>"))}</td>
            <td>{AdminPages.Duration(i.HeartbeatAge)} ago</td><td>{i.Hostname} {(i.ProcessId is { } pid ? $"pid {pid}" : "")}</td><td>{i.Version}</td>
            <td class="num">{(showWork ? $"{i.ActiveRuns}/{i.MaxConcurrentRuns}" : $"—/{i.MaxConcurrentRuns}")}</td>
            <td class="num">{(showWork ? $"{i.ActiveToolExecutions}/{i.MaxConcurrentTools}" : $"—/{i.MaxConcurrentTools}")}</td>
            <td>{string.Join(", ", i.Tools)}</td><td>{AdminPages.Time(i.CreatedAt)}</td></tr>
            """));
        var content = Html.Of($"""
            <div data-refresh="5000">
            <table><thead><tr><th>Instance</th><th>Health</th><th>Heartbeat</th><th>Host</th><th>Version</th><th class="num">Runs</th><th class="num">Tools</th><th>Registered tools</th><th>Started</th></tr></thead><tbody>{rows}</tbody></table>
            {Html.When(instances.Count == 0, Html.Trusted("<p class=\"muted\">No instance is registered: start a client (StartAsync) to process runs.</p>"))}
            </div>
            """);
        return AdminPages.Page(r, "Instances", content);
    }

    /// <summary>healthy within two heartbeats, warning until the instance TTL, then unhealthy (about to be removed).</summary>
    public static string Health(AdminRequest r, InstanceInfo instance)
    {
        var options = r.Client.Options;
        return instance.HeartbeatAge <= options.HeartbeatInterval * 2 ? "healthy"
            : instance.HeartbeatAge <= options.InstanceTtl ? "warning"
            : "unhealthy";
    }
}
