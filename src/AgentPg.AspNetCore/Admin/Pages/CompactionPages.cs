namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>Compaction events across sessions (or of one session), newest first.</summary>
internal static class CompactionPages
{
    public static async Task<IResult> ListAsync(AdminRequest r)
    {
        var sessionId = await r.SessionFilterAsync("session").ConfigureAwait(false);
        var page = await r.PageAsync((client, ct) => client.ListCompactionEventsAsync(new CompactionEventQuery
        {
            SessionId = sessionId,
            SessionMetadata = r.Tenant,
            Limit = r.Options.PageSize,
            Cursor = r.Query("cursor"),
        }, ct)).ConfigureAwait(false);

        var rows = page.Items.Select(e => Html.Of($"""
            <tr><td>{AdminPages.Time(e.CreatedAt)}</td><td>{AdminPages.SessionLink(r, e.SessionId)}</td><td>{e.Strategy}</td>
            <td class="num">{AdminPages.Tokens(e.OriginalTokens)} → {AdminPages.Tokens(e.CompactedTokens)}</td>
            <td class="num">{e.MessagesRemoved}</td><td class="num">{e.MessagesPruned}</td><td>{e.Reason}</td><td>{e.ModelUsed}</td>
            <td>{AdminPages.Duration(e.Duration)}</td><td>{AdminPages.Time(e.RestoredAt)}</td></tr>
            """));
        return AdminPages.Page(r, "Compaction", Html.Of($"""
            <form method="get" class="filters"><label>Session <input name="session" value="{sessionId?.ToString()}" placeholder="session id" size="36"></label> <button type="submit">Filter</button></form>
            <table><thead><tr><th>When</th><th>Session</th><th>Strategy</th><th class="num">Tokens</th><th class="num">Messages removed</th><th class="num">Tool outputs pruned</th><th>Reason</th><th>Model</th><th>Duration</th><th>Restored</th></tr></thead><tbody>{rows}</tbody></table>
            {Html.When(page.Items.Count == 0, Html.Trusted("<p class=\"muted\">No compactions.</p>"))}
            {AdminPages.NextPage(r, page.NextCursor)}
            """));
    }
}
