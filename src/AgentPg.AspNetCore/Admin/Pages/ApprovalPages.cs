using System.Text.Json;

namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>The approvals inbox: tool calls waiting for a person, at any agent depth, to approve (optionally with an edited
/// input) or reject with a reason. The decision records the signed-in user's name.</summary>
internal static class ApprovalPages
{
    public static async Task<IResult> ListAsync(AdminRequest r)
    {
        var pending = await r.Client.GetPendingApprovalsAsync(metadata: r.Tenant, limit: 200, cancellationToken: r.Aborted).ConfigureAwait(false);
        var agents = await RunPages.AgentNamesAsync(r).ConfigureAwait(false);
        // The library's limit on what Claude reads of a decision (the reason; an edited input with its comment).
        var maxLength = Html.When(r.Client.Options.MaxToolOutputLength is not null, Html.Of($" maxlength=\"{r.Client.Options.MaxToolOutputLength}\""));
        var items = pending.Select(a => Html.Of($"""
            <article class="approval" data-approval="{a.ToolExecutionId}">
            <h3><code>{a.ToolName}</code> <span class="muted">requested by {agents.GetValueOrDefault(a.AgentId, AdminPages.Short(a.AgentId))} · depth {a.Depth} · {AdminPages.Time(a.RequestedAt)}</span></h3>
            <p>Run {AdminPages.RunLink(r, a.RunId)}{Html.When(a.RootRunId != a.RunId, Html.Of($" (root {AdminPages.RunLink(r, a.RootRunId)})"))} · session {AdminPages.SessionLink(r, a.SessionId)} · execution {AdminPages.ToolExecutionLink(r, a.ToolExecutionId)}</p>
            <pre>{AdminPages.Json(a.Input)}</pre>
            {Html.When(r.CanAct, Html.Of($"""
                <form method="post" action="{r.Url($"/approvals/{a.ToolExecutionId}/approve")}" class="decide">{r.AntiforgeryField()}
                <details><summary>edit the input</summary><textarea name="input" rows="6">{AdminPages.Json(a.Input)}</textarea></details>
                <input name="comment"{maxLength} placeholder="comment (optional)">
                <button type="submit">Approve</button>
                </form>
                <form method="post" action="{r.Url($"/approvals/{a.ToolExecutionId}/reject")}" class="decide">{r.AntiforgeryField()}
                <input name="reason" required{maxLength} placeholder="reason (the model sees it)">
                <button type="submit" class="danger">Reject</button>
                </form>
                """))}
            </article>
            """));
        var content = Html.Of($"""
            <div data-refresh="3000">
            {items}
            {Html.When(pending.Count == 0, Html.Trusted("<p class=\"muted\">No tool call is waiting for approval.</p>"))}
            </div>
            """);
        return AdminPages.Page(r, "Approvals", content);
    }

    public static async Task<IResult> ApproveAsync(AdminRequest r)
    {
        var execution = await r.ToolExecutionAsync(r.RouteId("tool execution")).ConfigureAwait(false);
        var form = await r.FormAsync().ConfigureAwait(false);
        JsonElement? input = null;
        var edited = form["input"].ToString();
        // The form carries the model's input back unchanged unless the approver edited it, however long it is: the server's
        // form limits bound it, and the client validates an edit against the tool's schema.
        if (!string.IsNullOrWhiteSpace(edited))
        {
            try
            {
                using var document = JsonDocument.Parse(edited);
                var parsed = document.RootElement.Clone();
                // Only an input that differs from the model's counts as an edit.
                if (!JsonElement.DeepEquals(parsed, execution.ToolInput))
                {
                    input = parsed;
                }
            }
            catch (JsonException e)
            {
                throw new AdminHttpException(StatusCodes.Status400BadRequest, $"The edited input is not valid JSON: {e.Message}");
            }
        }
        var comment = Text(form["comment"].ToString());
        // The client bounds a comment that goes with an edited input (Claude reads both); alone it is only stored, but the form
        // allows no more, and a hand-crafted post gets the same answer rather than a comment cut short.
        if (comment is not null && r.Client.Options.MaxToolOutputLength is { } max && comment.Length > max)
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest,
                $"The comment has {comment.Length} characters, more than the {max} allowed (AgentPgOptions.MaxToolOutputLength). Shorten it; " +
                "nothing was decided.");
        }

        await DecideAsync(() => r.Client.ApproveToolCallAsync(execution.Id, input, comment, DecidedBy(r), r.Aborted)).ConfigureAwait(false);
        return RunPages.Back(r, "/approvals");
    }

    public static async Task<IResult> RejectAsync(AdminRequest r)
    {
        var execution = await r.ToolExecutionAsync(r.RouteId("tool execution")).ConfigureAwait(false);
        var form = await r.FormAsync().ConfigureAwait(false);
        var reason = Text(form["reason"].ToString())
            ?? throw new AdminHttpException(StatusCodes.Status400BadRequest, "Give a reason: the model sees it in place of the tool's result.");
        await DecideAsync(() => r.Client.RejectToolCallAsync(execution.Id, reason, DecidedBy(r), r.Aborted)).ConfigureAwait(false);
        return RunPages.Back(r, "/approvals");
    }

    private static async Task DecideAsync(Func<Task> decide)
    {
        try
        {
            await decide().ConfigureAwait(false);
        }
        catch (AgentPgException e) when (e.Code == AgentPgErrorCode.ApprovalNotPending)
        {
            throw new AdminHttpException(StatusCodes.Status409Conflict, "This tool call was already decided (or its run ended).");
        }
        catch (AgentPgException e) when (e.Code == AgentPgErrorCode.ToolExecutionNotFound)
        {
            // Found when the page loaded, gone now: its session was deleted meanwhile.
            throw new AdminHttpException(StatusCodes.Status404NotFound, "This tool call no longer exists (its session was deleted).");
        }
        catch (ArgumentException e)
        {
            throw new AdminHttpException(StatusCodes.Status400BadRequest, e.Message);
        }
    }

    // Whole: the client refuses what is too long with a message that says so (a 400 here), never cut.
    private static string? Text(string value) => string.IsNullOrWhiteSpace(value) ? null : value;

    private static string? DecidedBy(AdminRequest r) => r.Http.User.Identity?.Name;
}
