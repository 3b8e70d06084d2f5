namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>Chat with an agent: start a session, send, watch the answer stream in, stop, regenerate. Sessions created here
/// carry the request's tenant entries, so they stay visible to that tenant only.</summary>
internal static class ChatPages
{
    private const int MaxMessageLength = 100_000;

    private static readonly RunState[] s_active =
        [RunState.Pending, RunState.BatchSubmitting, RunState.BatchPending, RunState.BatchProcessing, RunState.Streaming,
         RunState.PendingTools, RunState.AwaitingInput];

    public static async Task<IResult> IndexAsync(AdminRequest r)
    {
        var sidebar = await SidebarAsync(r, null).ConfigureAwait(false);
        var form = r.CanAct ? await NewFormAsync(r).ConfigureAwait(false) : Html.Trusted("<p class=\"muted\">Chat is disabled: this admin UI is read-only.</p>");
        return Layout(r, sidebar, Html.Of($"""
            <h2>New conversation</h2>
            {form}
            """));
    }

    public static async Task<IResult> SessionAsync(AdminRequest r)
    {
        var session = await r.SessionAsync(r.RouteId("session")).ConfigureAwait(false);
        var runs = await r.Client.ListRunsAsync(new RunQuery { SessionId = session.Id, SessionMetadata = r.Tenant, Limit = 1000 }, r.Aborted)
            .ConfigureAwait(false);
        var messages = await r.Client.GetMessagesAsync(session.Id, r.Aborted).ConfigureAwait(false);
        var latest = runs.Items.Where(run => run.ParentRunId is null).MaxBy(run => run.CreatedAt);
        var active = latest is not null && !AdminPages.IsTerminal(latest.State) ? latest : null;
        var agents = await RunPages.AgentNamesAsync(r).ConfigureAwait(false);
        // A conversation of an agent the request may not chat with (AgentFilter) is shown, not continued.
        var mayContinue = latest is null || await r.MayChatWithAsync(latest.AgentId).ConfigureAwait(false);

        var live = active is null
            ? Html.Empty
            : Html.Of($"""
                <div class="message assistant pending live" data-run="{active.Id}" data-events="{AdminPages.EventsUrl(r, active.Id)}" data-done-reload="1">
                <div class="meta">assistant · {agents.GetValueOrDefault(active.AgentId, "")} · {AdminPages.StateBadge(active.State)}</div>
                <div class="block text" data-live-text></div>
                <ul class="live-tools" data-live-tools></ul>
                {AdminPages.ActionButton(r, $"/runs/{active.Id}/cancel", "Stop", "danger", returnToChat: true)}
                </div>
                """);
        var regenerate = latest is not null && active is null && r.CanAct && mayContinue
            ? AdminPages.ActionButton(r, $"/runs/{latest.Id}/regenerate", "Regenerate last response", returnToChat: true)
            : Html.Empty;
        var send = r.CanAct && active is null && !mayContinue
            ? Html.Trusted("<p class=\"muted\">This conversation's agent is not one you may chat with.</p>")
            : r.CanAct && active is null
            ? Html.Of($"""
                <form method="post" action="{r.Url("/chat/send")}" class="send">{r.AntiforgeryField()}
                <input type="hidden" name="session" value="{session.Id}">
                <textarea name="message" rows="3" required maxlength="{MaxMessageLength}" placeholder="Message"></textarea>
                <button type="submit">Send</button>
                </form>
                """)
            : Html.Empty;
        var sidebar = await SidebarAsync(r, session.Id).ConfigureAwait(false);
        return Layout(r, sidebar, Html.Of($"""
            <p class="muted">Session {AdminPages.SessionLink(r, session.Id)}{Html.When(latest is not null, Html.Of($" · agent {agents.GetValueOrDefault(latest?.AgentId ?? Guid.Empty, "")}"))}</p>
            {Conversation.Render(r, messages, runs.Items.ToDictionary(run => run.Id))}
            {live}
            <p class="actions">{regenerate}</p>
            {send}
            """), refreshUntilDone: active is not null);
    }

    /// <summary>The chat page: the sessions sidebar and the main column; <paramref name="refreshUntilDone"/> while a run is in
    /// progress, so the page reloads when it ends.</summary>
    private static IResult Layout(AdminRequest r, Html sidebar, Html main, bool refreshUntilDone = false) => AdminPages.Page(r, "Chat", Html.Of($"""
        <div class="chat">
        {sidebar}
        <section class="chat-main"{Html.When(refreshUntilDone, Html.Trusted(" data-refresh-until-done=\"1000\""))}>
        {main}
        </section>
        </div>
        """));

    public static async Task<IResult> SendAsync(AdminRequest r)
    {
        var form = await r.FormAsync().ConfigureAwait(false);
        var message = form["message"].ToString();
        if (string.IsNullOrWhiteSpace(message) || message.Length > MaxMessageLength)
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest, $"The message must be 1 to {MaxMessageLength} characters.");
        }

        Guid sessionId;
        Guid agentId;
        if (form["session"].ToString() is { Length: > 0 } sessionText)
        {
            var session = await r.SessionAsync(AdminRequest.ParseId(sessionText, "session")).ConfigureAwait(false);
            sessionId = session.Id;
            var latestPage = await r.Client.ListRunsAsync(new RunQuery { SessionId = session.Id, RootOnly = true, SessionMetadata = r.Tenant, Limit = 1 }, r.Aborted)
                .ConfigureAwait(false);
            var latest = latestPage.Items.Count > 0 ? latestPage.Items[0] : null;
            if (form["agent"].ToString() is { Length: > 0 } agentText)
            {
                agentId = await AgentIdAsync(r, agentText).ConfigureAwait(false);
            }
            else
            {
                agentId = latest?.AgentId ?? throw new AdminHttpException(StatusCodes.Status400BadRequest, "Choose an agent: this session has no run yet.");
                if (!await r.MayChatWithAsync(agentId).ConfigureAwait(false))
                {
                    throw new AdminHttpException(StatusCodes.Status400BadRequest, "This conversation's agent is not one you may chat with: choose an agent.");
                }
            }
        }
        else
        {
            agentId = await AgentIdAsync(r, form["agent"].ToString()).ConfigureAwait(false);
            sessionId = await r.Client.NewSessionAsync(metadata: r.Tenant, cancellationToken: r.Aborted).ConfigureAwait(false);
        }

        try
        {
            await r.Client.RunFastAsync(sessionId, agentId, message, cancellationToken: r.Aborted).ConfigureAwait(false);
        }
        catch (AgentPgException e) when (e.Code is not (AgentPgErrorCode.RunNotFound or AgentPgErrorCode.SessionNotFound))
        {
            throw new AdminHttpException(StatusCodes.Status409Conflict, e.Message);
        }
        catch (ArgumentException e)
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest, e.Message);
        }

        return RunPages.Back(r, $"/chat/{sessionId}");
    }

    private static async Task<Guid> AgentIdAsync(AdminRequest r, string name)
    {
        if (string.IsNullOrWhiteSpace(name) || name.Length > 128)
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest, "Choose an agent.");
        }

        var agents = await r.AgentsAsync().ConfigureAwait(false);
        return agents.FirstOrDefault(a => a.Name == name)?.Id
            ?? throw new AdminHttpException(StatusCodes.Status400BadRequest, $"There is no agent named '{name}'.");
    }

    private static async Task<Html> NewFormAsync(AdminRequest r)
    {
        var agents = await r.AgentsAsync().ConfigureAwait(false);
        return Html.Of($"""
            <form method="post" action="{r.Url("/chat/send")}" class="send">{r.AntiforgeryField()}
            <label>Agent <select name="agent" required>{agents.OrderBy(a => a.Name, StringComparer.Ordinal).Select(a => AdminPages.Option(a.Name, a.Name, null))}</select></label>
            <textarea name="message" rows="3" required maxlength="{MaxMessageLength}" placeholder="Message"></textarea>
            <button type="submit">Start</button>
            </form>
            """);
    }

    private static async Task<Html> SidebarAsync(AdminRequest r, Guid? current)
    {
        var sessions = await r.Client.ListSessionsAsync(new SessionQuery { Metadata = r.Tenant, RootOnly = true, Limit = 15 }, r.Aborted).ConfigureAwait(false);
        var items = sessions.Items.Select(s => Html.Of(
            $"<li{Html.When(s.Id == current, Html.Trusted(" class=\"active\""))}><a href=\"{r.Url($"/chat/{s.Id}")}\">{AdminPages.Short(s.Id)}</a> <span class=\"muted\">{AdminPages.Time(s.UpdatedAt)}</span></li>"));
        return Html.Of($"""
            <aside class="chat-sessions"><a class="button" href="{r.Url("/chat")}">New conversation</a>
            <ul>{items}</ul>
            </aside>
            """);
    }
}
