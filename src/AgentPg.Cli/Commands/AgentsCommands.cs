using System.CommandLine;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg agents list</c>.</summary>
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
        return agentsCommand;
    }
}
