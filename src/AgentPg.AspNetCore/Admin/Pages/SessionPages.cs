namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>The sessions list, a session's detail (metadata, its runs and the whole conversation) and its deletion.</summary>
internal static class SessionPages
{
    public static async Task<IResult> ListAsync(AdminRequest r)
    {
        var page = await r.PageAsync((client, ct) => client.ListSessionsAsync(new SessionQuery
        {
            Metadata = r.Tenant,
            RootOnly = r.Query("root") == "1",
            Limit = r.Options.PageSize,
            Cursor = r.Query("cursor"),
        }, ct)).ConfigureAwait(false);

        var rows = page.Items.Select(s => Html.Of($"""
            <tr><td>{AdminPages.SessionLink(r, s.Id)}</td><td>{Html.When(s.ParentSessionId is not null, AdminPages.SessionLink(r, s.ParentSessionId ?? Guid.Empty))}</td>
            <td class="num">{s.Depth}</td><td class="clip"><code>{Metadata(s.Metadata)}</code></td><td class="num">{s.CompactionCount}</td>
            <td>{AdminPages.Time(s.CreatedAt)}</td><td>{AdminPages.Time(s.UpdatedAt)}</td></tr>
            """));
        var content = Html.Of($"""
            <form method="get" class="filters"><label><input type="checkbox" name="root" value="1"{Html.When(r.Query("root") == "1", Html.Trusted(" checked"))}> root sessions only</label> <button type="submit">Filter</button></form>
            <table><thead><tr><th>Session</th><th>Parent</th><th class="num">Depth</th><th>Metadata</th><th class="num">Compactions</th><th>Created</th><th>Updated</th></tr></thead><tbody>{rows}</tbody></table>
            {Html.When(page.Items.Count == 0, Html.Trusted("<p class=\"muted\">No sessions.</p>"))}
            {AdminPages.NextPage(r, page.NextCursor)}
            """);
        return AdminPages.Page(r, "Sessions", content);
    }

    public static async Task<IResult> DetailAsync(AdminRequest r)
    {
        var session = await r.SessionAsync(r.RouteId("session")).ConfigureAwait(false);
        var runs = await r.Client.ListRunsAsync(new RunQuery { SessionId = session.Id, SessionMetadata = r.Tenant, Limit = 1000 }, r.Aborted).ConfigureAwait(false);
        var messages = await r.Client.GetMessagesAsync(session.Id, r.Aborted).ConfigureAwait(false);
        var agents = await RunPages.AgentNamesAsync(r).ConfigureAwait(false);
        var usage = runs.Items.Aggregate((In: 0L, Out: 0L), (sum, run) => (sum.In + run.Usage.InputTokens, sum.Out + run.Usage.OutputTokens));

        var content = Html.Of($"""
            <dl class="facts">
            <dt>Metadata</dt><dd><code>{Metadata(session.Metadata)}</code></dd>
            <dt>Parent</dt><dd>{(session.ParentSessionId is { } parent ? AdminPages.SessionLink(r, parent) : Html.Trusted("—"))}</dd>
            <dt>Created</dt><dd>{AdminPages.Time(session.CreatedAt)}</dd>
            <dt>Updated</dt><dd>{AdminPages.Time(session.UpdatedAt)}</dd>
            <dt>Compactions</dt><dd>{session.CompactionCount}{Html.When(session.CompactionCount > 0, Html.Of($" (<a href=\"{r.Url($"/compaction?session={session.Id}")}\">events</a>)"))}</dd>
            <dt>Tokens</dt><dd>{AdminPages.Tokens(usage.In)} in, {AdminPages.Tokens(usage.Out)} out</dd>
            </dl>
            <p class="actions"><a class="button" href="{r.Url($"/chat/{session.Id}")}">Open in chat</a></p>
            <h2>Runs</h2>
            <table class="runs"><thead><tr><th>Run</th><th>Agent</th><th>State</th><th>Mode</th><th>Depth</th><th>Session</th><th>Created</th><th>Duration</th><th class="num">Tokens</th></tr></thead>
            <tbody>{runs.Items.Select(run => RunPages.Row(r, run, agents))}</tbody></table>
            <h2>Conversation</h2>
            {Conversation.Render(r, messages, runs.Items.ToDictionary(run => run.Id))}
            {DeleteForm(r, session)}
            """);
        return AdminPages.Page(r, $"Session {AdminPages.Short(session.Id)}", content);
    }

    /// <summary>Deletes the session with everything in it and its child sessions, after the form's confirmation. Refused (nothing
    /// deleted) when a session of the tree is outside the request's tenant or holds runs of an agent the request may not see
    /// (checked by the statement that deletes, under its lock), or while a run in the tree is not finished.</summary>
    public static async Task<IResult> DeleteAsync(AdminRequest r)
    {
        var session = await r.SessionAsync(r.RouteId("session")).ConfigureAwait(false);
        var form = await r.FormAsync().ConfigureAwait(false);
        if (form["confirm"] != "yes")
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest,
                "Tick the box that confirms the deletion: a deleted session cannot be restored. Nothing was deleted.");
        }

        var agents = r.Options.AgentFilter is null ? null : (await r.AgentsAsync().ConfigureAwait(false)).Select(a => a.Id).ToList();
        SessionDeletionScope outcome;
        try
        {
            outcome = await r.Client.DeleteSessionInScopeAsync(session.Id, r.Tenant, agents, r.Aborted).ConfigureAwait(false);
        }
        catch (AgentPgException e) when (e.Code == AgentPgErrorCode.SessionBusy)
        {
            // The runs are in the request's scope (checked before the busy ones are looked for): link them, to cancel them.
            var active = e.Context.TryGetValue("run_ids", out var ids) && ids is Guid[] runIds ? runIds : [];
            return AdminPages.Page(r, "Session busy", Html.Of($"""
                <p class="error">{e.Message}</p>
                {Html.When(active.Length > 0, Html.Of($"<p>Runs not finished: {active.Select(id => Html.Of($"{AdminPages.RunLink(r, id)} "))}</p>"))}
                <p><a href="{r.Url($"/sessions/{session.Id}")}">Back to the session</a></p>
                """), StatusCodes.Status409Conflict);
        }

        return outcome switch
        {
            SessionDeletionScope.Deleted => RunPages.Back(r, "/sessions"),
            SessionDeletionScope.SessionOutside => throw new AdminHttpException(StatusCodes.Status403Forbidden,
                "This session has child sessions outside your tenant, which would be deleted with it: it cannot be deleted here. Nothing was deleted."),
            _ => throw new AdminHttpException(StatusCodes.Status403Forbidden,
                "This session or one of its child sessions holds runs of an agent you may not see: it cannot be deleted here. Nothing was deleted."),
        };
    }

    public static string Metadata(IReadOnlyDictionary<string, object?> metadata) => AdminPages.CompactJson(metadata);

    // A POST that needs no JavaScript: the box must be ticked (the browser asks for it, the server checks it). Absent when
    // read-only.
    private static Html DeleteForm(AdminRequest r, Session session)
        => r.CanAct
            ? Html.Of($"""
                <details class="danger-zone"><summary>Delete this session…</summary>
                <form method="post" action="{r.Url($"/sessions/{session.Id}/delete")}">{r.AntiforgeryField()}
                <p>Deletes the session for good with everything in it — its runs, messages, tool executions and approvals,
                compactions and live events — and its child sessions. A session with a run that is not finished cannot be
                deleted: cancel its runs first.</p>
                <label><input type="checkbox" name="confirm" value="yes" required> Delete session {AdminPages.Short(session.Id)} and its child sessions; this cannot be undone</label>
                <button type="submit" class="danger">Delete session</button>
                </form></details>
                """)
            : Html.Empty;
}
