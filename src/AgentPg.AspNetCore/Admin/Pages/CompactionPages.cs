namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>Compaction events across sessions (or of one session), newest first, and undoing one.</summary>
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
            <td>{AdminPages.Duration(e.Duration)}</td><td>{AdminPages.Time(e.RestoredAt)}{RestoreForm(r, e)}</td></tr>
            """));
        return AdminPages.Page(r, "Compaction", Html.Of($"""
            <form method="get" class="filters"><label>Session <input name="session" value="{sessionId?.ToString()}" placeholder="session id" size="36"></label> <button type="submit">Filter</button></form>
            <table><thead><tr><th>When</th><th>Session</th><th>Strategy</th><th class="num">Tokens</th><th class="num">Messages removed</th><th class="num">Tool outputs pruned</th><th>Reason</th><th>Model</th><th>Duration</th><th>Restored</th></tr></thead><tbody>{rows}</tbody></table>
            {Html.When(page.Items.Count == 0, Html.Trusted("<p class=\"muted\">No compactions.</p>"))}
            {AdminPages.NextPage(r, page.NextCursor)}
            """));
    }

    /// <summary>Undoes a compaction (<see cref="AgentPgClient.RestoreCompactionAsync"/>): its session must be the request's
    /// tenant's, and hold no run of an agent the request may not see; refused with the library's message when it was restored
    /// already or a later compaction of the session is still in place.</summary>
    public static async Task<IResult> RestoreAsync(AdminRequest r)
    {
        var eventId = r.RouteId("compaction");
        var form = await r.FormAsync().ConfigureAwait(false);
        if (!Guid.TryParse(form["session"], out var sessionId))
        {
            throw AdminHttpException.NotFound("compaction");
        }

        // The session by the tenant filter (404 for another tenant's), then the event among that session's own.
        var session = await r.SessionAsync(sessionId).ConfigureAwait(false);
        try
        {
            var events = await r.Client.GetCompactionEventsAsync(session.Id, limit: 1000, r.Aborted).ConfigureAwait(false);
            if (!events.Any(e => e.Id == eventId))
            {
                throw AdminHttpException.NotFound("compaction");
            }

            if (r.Options.AgentFilter is not null && !await SeesEveryAgentAsync(r, session.Id).ConfigureAwait(false))
            {
                throw new AdminHttpException(StatusCodes.Status403Forbidden,
                    "This session holds runs of an agent you may not see: its compactions cannot be restored here. Nothing was changed.");
            }

            await r.Client.RestoreCompactionAsync(eventId, r.Aborted).ConfigureAwait(false);
        }
        catch (AgentPgException e) when (e.Code == AgentPgErrorCode.CompactionFailed)
        {
            throw new AdminHttpException(StatusCodes.Status409Conflict, e.Message);
        }
        catch (AgentPgException e) when (e.Code is AgentPgErrorCode.CompactionNotFound or AgentPgErrorCode.SessionNotFound)
        {
            // Listed when the form was posted, gone now: the session was deleted meanwhile.
            throw AdminHttpException.NotFound("compaction");
        }

        return RunPages.Back(r, $"/compaction?session={session.Id}");
    }

    private static async Task<bool> SeesEveryAgentAsync(AdminRequest r, Guid sessionId)
    {
        var visible = (await r.AgentsAsync().ConfigureAwait(false)).Select(a => a.Id).ToHashSet();
        string? cursor = null;
        do
        {
            var page = await r.Client.ListRunsAsync(new RunQuery { SessionId = sessionId, SessionMetadata = r.Tenant, Limit = 1000, Cursor = cursor }, r.Aborted)
                .ConfigureAwait(false);
            if (page.Items.Any(run => !visible.Contains(run.AgentId)))
            {
                return false;
            }

            cursor = page.NextCursor;
        }
        while (cursor is not null);

        return true;
    }

    // A compaction still in place can be undone (the library refuses, with its reason, one that is not the session's latest).
    private static Html RestoreForm(AdminRequest r, CompactionEvent e)
        => r.CanAct && e.RestoredAt is null
            ? Html.Of($"""
                <form method="post" action="{r.Url($"/compaction/{e.Id}/restore")}" class="inline">{r.AntiforgeryField()}<input type="hidden" name="session" value="{e.SessionId.ToString()}"><button type="submit" title="Put the compacted messages back and remove the summary">Restore</button></form>
                """)
            : Html.Empty;
}
