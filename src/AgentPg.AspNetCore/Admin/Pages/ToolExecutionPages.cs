namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>The tool executions list (filters, keyset pages) and one execution's detail.</summary>
internal static class ToolExecutionPages
{
    private static readonly StateFilter<ToolExecutionState> s_states = new(AdminPages.Name, "tool execution state");

    public static async Task<IResult> ListAsync(AdminRequest r)
    {
        var state = r.Query("state");
        var tool = r.Query("tool");
        var kind = r.Query("kind");
        var runId = await r.RunFilterAsync("run").ConfigureAwait(false);
        var query = new ToolExecutionQuery
        {
            States = s_states.Parse(state),
            ToolName = tool,
            IsAgentTool = kind switch
            {
                null => null,
                "agent" => true,
                "tool" => false,
                _ => throw new AdminHttpException(StatusCodes.Status400BadRequest, $"'{kind}' is not a kind (agent or tool)."),
            },
            RunId = runId,
            SessionMetadata = r.Tenant,
            Limit = r.Options.PageSize,
            Cursor = r.Query("cursor"),
        };
        var page = await r.PageAsync((client, ct) => client.ListToolExecutionsAsync(query, ct)).ConfigureAwait(false);

        var content = Html.Of($"""
            <form method="get" class="filters">
            <label>State <select name="state"><option value="">any</option>{s_states.Options(state)}</select></label>
            <label>Tool <input name="tool" value="{tool}" placeholder="tool name"></label>
            <label>Kind <select name="kind"><option value="">any</option>{AdminPages.Option("tool", "tools", kind)}{AdminPages.Option("agent", "agent tools", kind)}</select></label>
            <label>Run <input name="run" value="{runId?.ToString()}" placeholder="run id" size="36"></label>
            <button type="submit">Filter</button>
            </form>
            <table><thead><tr><th>Execution</th><th>Tool</th><th>State</th><th>Run</th><th>Attempts</th><th>Created</th><th>Duration</th><th>Input / output</th></tr></thead>
            <tbody>{page.Items.Select(e => Row(r, e))}</tbody></table>
            {Html.When(page.Items.Count == 0, Html.Trusted("<p class=\"muted\">No tool executions match.</p>"))}
            {AdminPages.NextPage(r, page.NextCursor)}
            """);
        return AdminPages.Page(r, "Tool executions", content);
    }

    public static async Task<IResult> DetailAsync(AdminRequest r)
    {
        var e = await r.ToolExecutionAsync(r.RouteId("tool execution")).ConfigureAwait(false);
        var content = Html.Of($"""
            <dl class="facts">
            <dt>Tool</dt><dd><code>{e.ToolName}</code>{Html.When(e.IsAgentTool, Html.Trusted(" (agent tool)"))}</dd>
            <dt>State</dt><dd>{AdminPages.StateBadge(e.State)}{Html.When(e.IsError, Html.Trusted(" <span class=\"badge state-failed\">is_error</span>"))}</dd>
            <dt>Run</dt><dd>{AdminPages.RunLink(r, e.RunId)}</dd>
            {Html.When(e.ChildRunId is not null, Html.Of($"<dt>Child run</dt><dd>{AdminPages.RunLink(r, e.ChildRunId ?? Guid.Empty)}</dd>"))}
            <dt>Tool use id</dt><dd><code>{e.ToolUseId}</code></dd>
            <dt>Attempts</dt><dd>{e.AttemptCount} of {e.MaxAttempts}, snoozed {e.SnoozeCount} times</dd>
            <dt>Instance</dt><dd>{e.ClaimedByInstanceId ?? "—"}</dd>
            <dt>Created</dt><dd>{AdminPages.Time(e.CreatedAt)}</dd>
            <dt>Scheduled</dt><dd>{AdminPages.Time(e.ScheduledAt)}</dd>
            <dt>Started</dt><dd>{AdminPages.Time(e.StartedAt)}</dd>
            <dt>Completed</dt><dd>{AdminPages.Time(e.CompletedAt)}</dd>
            {Html.When(e.ErrorMessage is not null, Html.Of($"<dt>Error</dt><dd class=\"error\">{e.ErrorMessage}</dd>"))}
            {Html.When(e.LastError is not null, Html.Of($"<dt>Last error</dt><dd class=\"error\">{e.LastError}</dd>"))}
            </dl>
            <h2>Input</h2><pre>{AdminPages.Json(e.ToolInput)}</pre>
            <h2>Output</h2><pre>{e.ToolOutput}</pre>
            """);
        return AdminPages.Page(r, $"Tool execution {AdminPages.Short(e.Id)}", content);
    }

    public static Html Row(AdminRequest r, ToolExecution e) => Html.Of($"""
        <tr><td>{AdminPages.ToolExecutionLink(r, e.Id)}</td><td><code>{e.ToolName}</code>{Html.When(e.IsAgentTool, Html.Trusted(" <span class=\"muted\">agent</span>"))}</td>
        <td>{AdminPages.StateBadge(e.State)}{Html.When(e.IsError, Html.Trusted(" <span class=\"badge state-failed\">error</span>"))}</td>
        <td>{AdminPages.RunLink(r, e.RunId)}{Html.When(e.ChildRunId is not null, Html.Of($" → {AdminPages.RunLink(r, e.ChildRunId ?? Guid.Empty)}"))}</td>
        <td class="num">{e.AttemptCount}/{e.MaxAttempts}</td><td>{AdminPages.Time(e.CreatedAt)}</td><td>{AdminPages.Duration(e.CompletedAt - e.StartedAt)}</td>
        <td><details><summary>show</summary><pre>{AdminPages.Json(e.ToolInput)}</pre><pre>{e.ToolOutput}</pre></details></td></tr>
        """);
}
