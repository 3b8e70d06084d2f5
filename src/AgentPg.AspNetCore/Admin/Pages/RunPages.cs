namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>The runs list (filters, keyset pages), a run's detail (iterations, tool executions, the run tree, the live stream
/// of a run in progress) and the cancel and regenerate actions.</summary>
internal static class RunPages
{
    private static readonly StateFilter<RunState> s_states = new(AdminPages.Name, "run state");

    public static async Task<IResult> ListAsync(AdminRequest r)
    {
        var state = r.Query("state");
        var mode = r.Query("mode");
        var since = r.Query("since");
        var agentId = r.OptionalId("agent", "agent");
        var sessionId = await r.SessionFilterAsync("session").ConfigureAwait(false);

        var query = new RunQuery
        {
            States = s_states.Parse(state),
            Mode = mode switch
            {
                null => null,
                "streaming" => RunMode.Streaming,
                "batch" => RunMode.Batch,
                _ => throw new AdminHttpException(StatusCodes.Status400BadRequest, $"'{mode}' is not a run mode (streaming or batch)."),
            },
            AgentId = agentId,
            SessionId = sessionId,
            RootOnly = r.Query("root") == "1",
            CreatedAfter = since switch
            {
                null => null,
                "1h" => r.Now.AddHours(-1),
                "24h" => r.Now.AddDays(-1),
                "7d" => r.Now.AddDays(-7),
                _ => throw new AdminHttpException(StatusCodes.Status400BadRequest, $"'{since}' is not a period (1h, 24h or 7d)."),
            },
            SessionMetadata = r.Tenant,
            Limit = r.Options.PageSize,
            Cursor = r.Query("cursor"),
        };
        var page = await r.PageAsync((client, ct) => client.ListRunsAsync(query, ct)).ConfigureAwait(false);

        var agents = await AgentNamesAsync(r).ConfigureAwait(false);
        var choices = r.Options.AgentFilter is null ? agents : (await r.AgentsAsync().ConfigureAwait(false)).ToDictionary(a => a.Id, a => a.Name);
        var rows = page.Items.Select(run => Row(r, run, agents));
        var content = Html.Of($"""
            <form method="get" class="filters">
            <label>State <select name="state"><option value="">any</option>{s_states.Options(state)}</select></label>
            <label>Agent <select name="agent"><option value="">any</option>{choices.OrderBy(a => a.Value, StringComparer.Ordinal).Select(a => AdminPages.Option(a.Key.ToString(), a.Value, agentId?.ToString()))}</select></label>
            <label>Mode <select name="mode"><option value="">any</option>{AdminPages.Option("streaming", "streaming", mode)}{AdminPages.Option("batch", "batch", mode)}</select></label>
            <label>Created <select name="since"><option value="">any time</option>{AdminPages.Option("1h", "last hour", since)}{AdminPages.Option("24h", "last 24 hours", since)}{AdminPages.Option("7d", "last 7 days", since)}</select></label>
            <label>Session <input name="session" value="{sessionId?.ToString()}" placeholder="session id" size="36"></label>
            <label><input type="checkbox" name="root" value="1"{Html.When(query.RootOnly, Html.Trusted(" checked"))}> root runs only</label>
            <button type="submit">Filter</button>
            </form>
            <table class="runs"><thead><tr><th>Run</th><th>Agent</th><th>State</th><th>Mode</th><th>Depth</th><th>Session</th><th>Created</th><th>Duration</th><th class="num">Tokens</th></tr></thead>
            <tbody>{rows}</tbody></table>
            {Html.When(page.Items.Count == 0, Html.Trusted("<p class=\"muted\">No runs match.</p>"))}
            {AdminPages.NextPage(r, page.NextCursor)}
            """);
        return AdminPages.Page(r, "Runs", content);
    }

    public static async Task<IResult> DetailAsync(AdminRequest r)
    {
        var run = await r.RunAsync(r.RouteId("run")).ConfigureAwait(false);
        var iterations = await r.Client.GetIterationsAsync(run.Id, r.Aborted).ConfigureAwait(false);
        var executions = await r.Client.ListToolExecutionsAsync(new ToolExecutionQuery { RunId = run.Id, SessionMetadata = r.Tenant, Limit = 1000 }, r.Aborted)
            .ConfigureAwait(false);
        var agents = await AgentNamesAsync(r).ConfigureAwait(false);
        var tree = await TreeAsync(r, run, agents, 0).ConfigureAwait(false);
        var terminal = AdminPages.IsTerminal(run.State);
        var regenerable = terminal && run.ParentRunId is null && await r.MayChatWithAsync(run.AgentId).ConfigureAwait(false);

        var iterationRows = iterations.OrderBy(i => i.IterationNumber).Select(i => Html.Of($"""
            <tr><td>{i.IterationNumber}</td><td>{i.TriggerType}</td><td>{(i.IsStreaming ? "streaming" : "batch")}</td><td>{i.StopReason}</td>
            <td>{AdminPages.Time(i.StartedAt)}</td><td>{AdminPages.Duration(i.CompletedAt - i.StartedAt)}</td>
            <td class="num">{AdminPages.Tokens(i.Usage.InputTokens)} / {AdminPages.Tokens(i.Usage.OutputTokens)}</td>
            <td class="num">{i.ToolExecutionCount}</td><td class="clip">{i.ErrorType} {i.ErrorMessage}</td></tr>
            """));
        var executionRows = executions.Items.OrderBy(e => e.CreatedAt).Select(e => ToolExecutionPages.Row(r, e));

        var content = Html.Of($"""
            <dl class="facts">
            <dt>State</dt><dd>{AdminPages.StateBadge(run.State)}</dd>
            <dt>Agent</dt><dd>{agents.GetValueOrDefault(run.AgentId, run.AgentId.ToString())}</dd>
            <dt>Session</dt><dd>{AdminPages.SessionLink(r, run.SessionId)}</dd>
            <dt>Mode</dt><dd>{(run.RunMode == RunMode.Batch ? "batch" : "streaming")}</dd>
            <dt>Depth</dt><dd>{run.Depth}{Html.When(run.ParentRunId is not null, Html.Of($" (parent {AdminPages.RunLink(r, run.ParentRunId ?? Guid.Empty)})"))}</dd>
            <dt>Created</dt><dd>{AdminPages.Time(run.CreatedAt)}</dd>
            <dt>Started</dt><dd>{AdminPages.Time(run.StartedAt)}</dd>
            <dt>Finished</dt><dd>{AdminPages.Time(run.FinalizedAt)}</dd>
            <dt>Duration</dt><dd>{AdminPages.Duration(run.FinalizedAt - (run.StartedAt ?? run.CreatedAt))}</dd>
            <dt>Tokens</dt><dd>{AdminPages.Tokens(run.Usage.InputTokens)} in, {AdminPages.Tokens(run.Usage.OutputTokens)} out, {AdminPages.Tokens(run.Usage.CacheReadInputTokens)} cache read, {AdminPages.Tokens(run.Usage.CacheCreationInputTokens)} cache write</dd>
            <dt>Iterations</dt><dd>{run.IterationCount} ({run.ToolIterations} with tools)</dd>
            <dt>Rescues</dt><dd>{run.RescueAttempts}</dd>
            {Html.When(run.ErrorMessage is not null, Html.Of($"<dt>Error</dt><dd class=\"error\">{run.ErrorType}: {run.ErrorMessage}</dd>"))}
            </dl>
            <p class="actions">
            {Html.When(!terminal, AdminPages.ActionButton(r, $"/runs/{run.Id}/cancel", "Cancel run", "danger"))}
            {Html.When(regenerable, AdminPages.ActionButton(r, $"/runs/{run.Id}/regenerate", "Regenerate"))}
            </p>
            <h2>Prompt</h2><pre class="text">{run.Prompt}</pre>
            <h2>Response</h2>
            <div class="live"{Html.When(!terminal, Html.Trusted(" data-refresh-until-done=\"2000\" data-done-reload=\"1\""))} data-run="{run.Id}" data-events="{(terminal ? "" : AdminPages.EventsUrl(r, run.Id))}"><pre class="text" data-live-text>{run.ResponseText}</pre></div>
            <h2>Run tree</h2>{tree}
            <h2>Iterations</h2>
            <table><thead><tr><th>#</th><th>Trigger</th><th>Mode</th><th>Stop reason</th><th>Started</th><th>Duration</th><th class="num">Tokens in / out</th><th class="num">Tools</th><th>Error</th></tr></thead><tbody>{iterationRows}</tbody></table>
            <h2>Tool executions</h2>
            <table><thead><tr><th>Execution</th><th>Tool</th><th>State</th><th>Run</th><th>Attempts</th><th>Created</th><th>Duration</th><th>Input / output</th></tr></thead><tbody>{executionRows}</tbody></table>
            {Html.When(executions.Items.Count == 0, Html.Trusted("<p class=\"muted\">No tool executions.</p>"))}
            """);
        return AdminPages.Page(r, $"Run {AdminPages.Short(run.Id)}", content);
    }

    public static async Task<IResult> CancelAsync(AdminRequest r)
    {
        var run = await r.RunAsync(r.RouteId("run")).ConfigureAwait(false);
        await r.Client.CancelRunAsync(run.Id, r.Aborted).ConfigureAwait(false);
        var form = await r.FormAsync().ConfigureAwait(false);
        return Back(r, form["return"] == "chat" ? $"/chat/{run.SessionId}" : $"/runs/{run.Id}");
    }

    public static async Task<IResult> RegenerateAsync(AdminRequest r)
    {
        var run = await r.RunAsync(r.RouteId("run")).ConfigureAwait(false);
        if (!await r.MayChatWithAsync(run.AgentId).ConfigureAwait(false))
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest, "This run's agent is not one you may chat with: it cannot be regenerated here.");
        }

        Guid regenerated;
        try
        {
            regenerated = await r.Client.RegenerateRunAsync(run.Id, r.Aborted).ConfigureAwait(false);
        }
        catch (AgentPgException e) when (e.Code == AgentPgErrorCode.RunCompacted)
        {
            // The way out is on the Compaction page: restore the session's compactions, newest first, then regenerate.
            return AdminPages.Page(r, "Run compacted", Html.Of($"""
                <p class="error">{e.Message}</p>
                <p><a href="{r.Url($"/compaction?session={run.SessionId}")}">The session's compactions</a> · <a href="{r.Url($"/runs/{run.Id}")}">Back to the run</a></p>
                """), StatusCodes.Status409Conflict);
        }
        catch (AgentPgException e) when (e.Code is not (AgentPgErrorCode.RunNotFound or AgentPgErrorCode.SessionNotFound))
        {
            throw new AdminHttpException(StatusCodes.Status409Conflict, e.Message);
        }

        var form = await r.FormAsync().ConfigureAwait(false);
        return Back(r, form["return"] == "chat" ? $"/chat/{run.SessionId}" : $"/runs/{regenerated}");
    }

    /// <summary>Post-redirect-get back to a page of the UI (never to a URL taken from the request).</summary>
    public static IResult Back(AdminRequest r, string path) => Results.Redirect(r.Url(path), permanent: false, preserveMethod: false);

    public static Html Row(AdminRequest r, Run run, IReadOnlyDictionary<Guid, string> agents) => Html.Of($"""
        <tr><td>{AdminPages.RunLink(r, run.Id)}</td><td>{agents.GetValueOrDefault(run.AgentId, AdminPages.Short(run.AgentId))}</td>
        <td>{AdminPages.StateBadge(run.State)}</td><td>{(run.RunMode == RunMode.Batch ? "batch" : "streaming")}</td><td class="num">{run.Depth}</td>
        <td>{AdminPages.SessionLink(r, run.SessionId)}</td><td>{AdminPages.Time(run.CreatedAt)}</td>
        <td>{AdminPages.Duration(run.FinalizedAt - (run.StartedAt ?? run.CreatedAt))}</td>
        <td class="num">{AdminPages.Tokens(run.Usage.InputTokens + run.Usage.OutputTokens)}</td></tr>
        """);

    public static async Task<IReadOnlyDictionary<Guid, string>> AgentNamesAsync(AdminRequest r)
    {
        var agents = await r.AllAgentsAsync().ConfigureAwait(false);
        return agents.ToDictionary(a => a.Id, a => a.Name);
    }

    // The run and the runs it delegated to, through its agent-tool executions; bounded so a huge tree cannot stall a page.
    private static async Task<Html> TreeAsync(AdminRequest r, Run run, IReadOnlyDictionary<Guid, string> agents, int level)
    {
        var children = new List<Html>();
        if (level < 6)
        {
            var executions = await r.Client.ListToolExecutionsAsync(
                new ToolExecutionQuery { RunId = run.Id, IsAgentTool = true, SessionMetadata = r.Tenant, Limit = 50 }, r.Aborted).ConfigureAwait(false);
            foreach (var execution in executions.Items.Where(e => e.ChildRunId is not null).OrderBy(e => e.CreatedAt))
            {
                var child = await r.Client.ListRunsAsync(new RunQuery { Ids = [execution.ChildRunId!.Value], SessionMetadata = r.Tenant, Limit = 1 }, r.Aborted)
                    .ConfigureAwait(false);
                if (child.Items.Count == 1)
                {
                    children.Add(await TreeAsync(r, child.Items[0], agents, level + 1).ConfigureAwait(false));
                }
            }
        }

        return Html.Of($"""
            <ul class="tree"><li>{AdminPages.RunLink(r, run.Id)} {agents.GetValueOrDefault(run.AgentId, AdminPages.Short(run.AgentId))} {AdminPages.StateBadge(run.State)}{children}</li></ul>
            """);
    }
}
