namespace AgentPg.AspNetCore.Admin;

/// <summary>Renders a conversation: every content block type, thinking collapsed, tool calls with their input and output,
/// the runs of agents called as tools nested under their call. Everything from the model or a tool is encoded text.</summary>
internal static class Conversation
{
    public static Html Render(AdminRequest r, IReadOnlyList<Message> messages, IReadOnlyDictionary<Guid, Run> runs)
    {
        if (messages.Count == 0)
        {
            return Html.Trusted("<p class=\"muted\">No messages yet.</p>");
        }

        return Html.Of($"""<ol class="conversation">{messages.Select(m => Message(r, m, runs))}</ol>""");
    }

    private static Html Message(AdminRequest r, Message message, IReadOnlyDictionary<Guid, Run> runs)
    {
        var run = message.RunId is { } id && runs.TryGetValue(id, out var found) ? found : null;
        var role = message.Role == MessageRole.User ? "user" : "assistant";
        var depth = Math.Min(run?.Depth ?? 0, 6);
        return Html.Of($"""
            <li class="message {role} depth-{depth}{(message.IsSummary ? " summary" : "")}">
            <div class="meta">{role}{Html.When(message.IsSummary, Html.Trusted(" · summary"))}{Html.When(run is not null, Html.Of($" · run {AdminPages.RunLink(r, run?.Id ?? Guid.Empty)}"))}{Html.When(depth > 0, Html.Of($" · depth {depth}"))} · {AdminPages.Time(message.CreatedAt)}</div>
            {message.Content.Select(Block)}
            </li>
            """);
    }

    public static Html Block(ContentBlock block) => block.Type switch
    {
        ContentTypes.Text => Html.Of($"""<div class="block text">{block.Text}</div>"""),
        ContentTypes.Thinking => Html.Of($"""<details class="block thinking"><summary>thinking</summary><div class="text">{block.Text}</div></details>"""),
        ContentTypes.RedactedThinking => Html.Trusted("""<div class="block thinking muted">redacted thinking</div>"""),
        ContentTypes.ToolUse => Html.Of($"""
            <details class="block tool-use" open><summary>tool call <code>{block.ToolName}</code> <span class="muted">{block.ToolUseId}</span></summary>
            <pre>{AdminPages.Json(block.ToolInput)}</pre></details>
            """),
        ContentTypes.ToolResult => Html.Of($"""
            <details class="block tool-result{(block.IsError ? " error" : "")}"><summary>tool result{(block.IsError ? " (error)" : "")} <span class="muted">{block.ToolResultForUseId}</span></summary>
            <pre>{block.ToolContent}</pre></details>
            """),
        ContentTypes.Image => Html.Trusted("""<div class="block muted">[image]</div>"""),
        ContentTypes.Document => Html.Trusted("""<div class="block muted">[document]</div>"""),
        _ => Html.Of($"""<details class="block other"><summary>{block.Type}</summary><pre>{AdminPages.Json(block.Raw)}</pre></details>"""),
    };
}
