using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Spectre.Console;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg agents list|show</c>.</summary>
internal static class AgentsCommands
{
    public static Command Create(CliGlobals globals)
    {
        var limit = LimitOption.Create("How many agents to show.", 100);
        var list = new Command("list", "List the agents stored in the database.");
        list.Options.Add(limit);
        globals.SetAction(list, async (parsed, context, cancellationToken) =>
        {
            var count = LimitOption.Get(parsed, limit);

            var agents = await context.Client.ListAgentsAsync(limit: count, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (context.Json)
            {
                context.WriteJson(agents);
                return CliExitCodes.Success;
            }

            if (agents.Agents.Count == 0)
            {
                context.WriteLine("No agents.");
                return CliExitCodes.Success;
            }

            var table = CliContext.Table("Id", "Name", "Model", "Tools", "Agents", "Description");
            foreach (var agent in agents.Agents)
            {
                CliContext.AddRow(table, agent.Id.ToString(), agent.Name, agent.Model, string.Join(", ", agent.Tools ?? []),
                    agent.AgentIds.Count == 0 ? "" : agent.AgentIds.Count.ToString(System.Globalization.CultureInfo.InvariantCulture),
                    Format.Line(agent.Description, 60));
            }

            context.Write(table);
            context.WriteLine($"{agents.Agents.Count} of {agents.TotalCount} agent(s).");
            return CliExitCodes.Success;
        });

        var agentsCommand = new Command("agents", "Agents stored in the database.");
        agentsCommand.Subcommands.Add(list);
        agentsCommand.Subcommands.Add(Show(globals));
        return agentsCommand;
    }

    private static Command Show(CliGlobals globals)
    {
        var agentArgument = new Argument<string>("agent") { Description = "The agent's name or id." };
        var command = new Command("show", "Show an agent: model, prompt, tools, delegates, approvals, thinking, effort and output schema.");
        command.Arguments.Add(agentArgument);
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var client = context.Client;
            var id = await RunsCommands.ResolveAgentAsync(context, parsed.GetValue(agentArgument)!, cancellationToken).ConfigureAwait(false);
            var agent = await client.GetAgentByIdAsync(id, cancellationToken).ConfigureAwait(false);
            if (context.Json)
            {
                context.WriteJson(agent);
                return CliExitCodes.Success;
            }

            var delegates = new List<string>();
            foreach (var delegateId in agent.AgentIds)
            {
                try
                {
                    delegates.Add($"{(await client.GetAgentByIdAsync(delegateId, cancellationToken).ConfigureAwait(false)).Name} ({delegateId})");
                }
                catch (AgentPgException ex) when (ex.Code == AgentPgErrorCode.AgentNotFound)
                {
                    delegates.Add($"(deleted) ({delegateId})");
                }
            }

            var facts = new Grid().AddColumn().AddColumn();
            void Fact(string name, string? value)
            {
                if (!string.IsNullOrEmpty(value))
                {
                    // Names, prompts and schemas are anyone's text: made inert for the terminal, never read as markup.
                    facts.AddRow(new Text(name), new Text(Format.Terminal(value)));
                }
            }

            Fact("Agent", $"{agent.Name} ({agent.Id})");
            Fact("Description", agent.Description);
            Fact("Model", agent.Model);
            Fact("Max tokens", agent.MaxTokens?.ToString(CultureInfo.InvariantCulture));
            Fact("Temperature", agent.Temperature?.ToString(CultureInfo.InvariantCulture));
            Fact("Top k", agent.TopK?.ToString(CultureInfo.InvariantCulture));
            Fact("Top p", agent.TopP?.ToString(CultureInfo.InvariantCulture));
            Fact("Thinking", agent.Thinking switch
            {
                null => null,
                { Type: AgentThinkingType.Enabled } t => $"enabled, budget {t.BudgetTokens} tokens",
                { Type: AgentThinkingType.Adaptive } => "adaptive",
                _ => "disabled",
            } + (agent.Thinking?.Display is { } display ? $", display {Format.Name(display)}" : ""));
            // As Claude receives it (output_config.effort).
            Fact("Effort", agent.Effort switch { null => null, AgentEffort.ExtraHigh => "xhigh", { } effort => Format.Name(effort) });
            Fact("Max iterations", agent.MaxIterations?.ToString(CultureInfo.InvariantCulture));
            Fact("Token budget", agent.TokenBudget?.ToString(CultureInfo.InvariantCulture));
            Fact("Memory", agent.Memory is { } memory ? MemoryText(memory) : null);
            Fact("Server tools", agent.ServerTools is { Count: > 0 } serverTools ? string.Join(", ", serverTools.Select(ServerToolText)) : null);
            Fact("Tools", agent.Tools is null ? "(any the instance registered)" : agent.Tools.Count == 0 ? "(none)" : string.Join(", ", agent.Tools));
            Fact("Agents", string.Join(", ", delegates));
            Fact("Approval", agent.ToolsRequiringApproval is { Count: > 0 } approval ? string.Join(", ", approval) : null);
            Fact("Metadata", agent.Metadata.Count == 0 ? null : JsonSerializer.Serialize(agent.Metadata));
            Fact("Created", Format.Time(agent.CreatedAt));
            Fact("Updated", Format.Time(agent.UpdatedAt));
            Fact("System prompt", agent.SystemPrompt);
            Fact("Output schema", agent.OutputSchema is { } schema ? JsonSerializer.Serialize(schema, s_indented) : null);
            context.Write(facts);
            return CliExitCodes.Success;
        });
        return command;
    }

    // The tool as Claude knows it (name and type), the beta it adds and, for a tool search, the tools it keeps loaded.
    private static string ServerToolText(ServerTool tool)
    {
        var details = new List<string> { tool.Type };
        if (tool.Beta is { } beta)
        {
            details.Add("beta " + beta);
        }

        if (tool.IsToolSearch)
        {
            details.Add(tool.AlwaysLoadedTools.Count == 0 ? "defers every tool" : "always loaded: " + string.Join(" ", tool.AlwaysLoadedTools));
        }

        return $"{tool.Name} ({string.Join("; ", details)})";
    }

    private static string MemoryText(AgentMemory memory)
    {
        var scope = memory.Scope switch
        {
            AgentMemoryScope.Agent => "per agent",
            AgentMemoryScope.Session => "per session",
            _ => $"per value of session metadata '{memory.MetadataKey}'",
        };
        return string.Create(CultureInfo.InvariantCulture, $"{scope}, files up to {memory.MaxFileBytes} bytes, store up to {memory.MaxStoreBytes} bytes");
    }

    private static readonly JsonSerializerOptions s_indented = new() { WriteIndented = true };
}
