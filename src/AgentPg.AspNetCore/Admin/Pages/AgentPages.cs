using System.Globalization;

namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>Agents with the live instances that can run them, and the tools the instances registered.</summary>
internal static class AgentPages
{
    public static async Task<IResult> ListAsync(AdminRequest r)
    {
        var agents = await r.AgentsAsync().ConfigureAwait(false);
        var instances = (await r.Client.ListInstancesAsync(r.Aborted).ConfigureAwait(false))
            .Where(i => InstancePages.Health(r, i) != "unhealthy").ToList();
        var names = agents.ToDictionary(a => a.Id, a => a.Name);

        var rows = agents.OrderBy(a => a.Name, StringComparer.Ordinal).Select(a =>
        {
            // An agent needs an instance that registered every one of its tools (agent tools run anywhere).
            var capable = instances.Where(i => (a.Tools ?? []).All(t => i.Tools.Contains(t, StringComparer.Ordinal))).ToList();
            return Html.Of($"""
                <tr><td><strong>{a.Name}</strong><div class="muted">{a.Description}</div></td><td><code>{a.Model}</code></td>
                <td>{string.Join(", ", a.Tools ?? [])}</td><td>{string.Join(", ", a.AgentIds.Select(id => names.GetValueOrDefault(id, AdminPages.Short(id))))}</td>
                <td>{(capable.Count == 0 ? Html.Trusted("<span class=\"badge state-failed\">none</span>") : Html.Text(string.Join(", ", capable.Select(i => i.Name))))}</td>
                <td>{Settings(a)}</td>
                <td><a href="{r.Url($"/runs?agent={a.Id}")}">runs</a></td></tr>
                """);
        });
        var tools = instances.SelectMany(i => i.Tools.Select(t => (Tool: t, Instance: i.Name)))
            .GroupBy(x => x.Tool, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => Html.Of($"""<tr><td><code>{g.Key}</code></td><td>{string.Join(", ", g.Select(x => x.Instance))}</td><td><a href="{r.Url($"/tool-executions?tool={Uri.EscapeDataString(g.Key)}")}">executions</a></td></tr>"""));
        var content = Html.Of($"""
            <table><thead><tr><th>Agent</th><th>Model</th><th>Tools</th><th>Agent tools</th><th>Live instances that can run it</th><th>Thinking, effort, output</th><th></th></tr></thead><tbody>{rows}</tbody></table>
            {Html.When(agents.Count == 0, Html.Trusted("<p class=\"muted\">No agents.</p>"))}
            <h2>Tools registered by live instances</h2>
            <table><thead><tr><th>Tool</th><th>Instances</th><th></th></tr></thead><tbody>{tools}</tbody></table>
            """);
        return AdminPages.Page(r, "Agents", content);
    }

    // What the agent asks of Claude beyond the prompt: its thinking, its effort, its run limits, its memory and the JSON schema of
    // its answers (encoded as text: a schema's descriptions and a metadata key are anyone's words).
    private static Html Settings(AgentDefinition a)
    {
        var thinking = a.Thinking switch
        {
            null => null,
            { Type: AgentThinkingType.Enabled } t => $"thinking: enabled, {t.BudgetTokens} tokens",
            { Type: AgentThinkingType.Adaptive } => "thinking: adaptive",
            _ => "thinking: disabled",
        };
        if (a.Thinking?.Display is { } display)
        {
            // No thinking at all stays null: it has no display (and string + string never is).
            thinking += $", display {display.ToString().ToLowerInvariant()}";
        }

        var effort = a.Effort is { } e ? "effort: " + AgentEfforts.ToWire(e) : null;
        var iterations = a.MaxIterations is { } max ? string.Create(CultureInfo.InvariantCulture, $"max iterations: {max}") : null;
        var budget = a.TokenBudget is { } tokens ? string.Create(CultureInfo.InvariantCulture, $"token budget: {tokens}") : null;
        var memory = a.Memory?.Scope switch
        {
            null => null,
            AgentMemoryScope.Agent => "memory: per agent",
            AgentMemoryScope.Session => "memory: per session",
            _ => $"memory: per session metadata '{a.Memory.MetadataKey}'",
        };
        var serverTools = a.ServerTools is { Count: > 0 } tools ? "server tools: " + string.Join(", ", tools.Select(t => t.Name)) : null;
        return Html.Of($"""
            <span data-agent-settings>{string.Join(" · ", new[] { thinking, effort, iterations, budget, memory, serverTools }.Where(x => x is not null))}</span>
            {Html.When(a.OutputSchema is not null, Html.Of($"<details><summary>output schema</summary><pre>{AdminPages.Json(a.OutputSchema)}</pre></details>"))}
            """);
    }
}
