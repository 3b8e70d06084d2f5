namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>A session's compaction events.</summary>
internal static class CompactionPages
{
    public static async Task<IResult> ListAsync(AdminRequest r)
    {
        var sessionId = r.OptionalId("session", "session");
        var form = Html.Of($"""
            <form method="get" class="filters"><label>Session <input name="session" value="{sessionId?.ToString()}" placeholder="session id" size="36"></label> <button type="submit">Show</button></form>
            """);
        if (sessionId is null)
        {
            return AdminPages.Page(r, "Compaction", Html.Of($"""{form}<p class="muted">Choose a session (sessions with compactions show a count on the sessions page).</p>"""));
        }

        var session = await r.SessionAsync(sessionId.Value).ConfigureAwait(false);
        var events = await r.Client.GetCompactionEventsAsync(session.Id, 100, r.Aborted).ConfigureAwait(false);
        var rows = events.Select(e => Html.Of($"""
            <tr><td>{AdminPages.Time(e.CreatedAt)}</td><td>{e.Strategy}</td><td class="num">{AdminPages.Tokens(e.OriginalTokens)} → {AdminPages.Tokens(e.CompactedTokens)}</td>
            <td class="num">{e.MessagesRemoved}</td><td>{e.Reason}</td><td>{e.ModelUsed}</td><td>{AdminPages.Duration(e.Duration)}</td><td>{AdminPages.Time(e.RestoredAt)}</td></tr>
            """));
        return AdminPages.Page(r, "Compaction", Html.Of($"""
            {form}
            <p>Session {AdminPages.SessionLink(r, session.Id)}</p>
            <table><thead><tr><th>When</th><th>Strategy</th><th class="num">Tokens</th><th class="num">Messages removed</th><th>Reason</th><th>Model</th><th>Duration</th><th>Restored</th></tr></thead><tbody>{rows}</tbody></table>
            {Html.When(events.Count == 0, Html.Trusted("<p class=\"muted\">This session was never compacted.</p>"))}
            """));
    }
}
