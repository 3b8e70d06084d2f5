using System.CommandLine;
using System.Globalization;
using Spectre.Console;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg runs list|show|watch|cancel</c>.</summary>
internal static partial class RunsCommands
{
    public static Command Create(CliGlobals globals)
    {
        var runs = new Command("runs", "Runs: list, show, watch and cancel.");
        runs.Subcommands.Add(List(globals));
        runs.Subcommands.Add(Show(globals));
        runs.Subcommands.Add(Cancel(globals));
        AddWatch(runs, globals);
        return runs;
    }

    /// <summary>Adds <c>runs watch</c> where the live event stream is available.</summary>
    static partial void AddWatch(Command runs, CliGlobals globals);

    internal static Argument<Guid> RunId() => new("ID") { Description = "The run's id." };

    private static Command List(CliGlobals globals)
    {
        var state = new Option<string[]>("--state") { Description = "Only runs in these states (pending, streaming, pending_tools, completed, failed, cancelled …); repeat or separate with commas.", AllowMultipleArgumentsPerToken = true };
        var agent = new Option<string?>("--agent") { Description = "Only runs of this agent (name or id)." };
        var session = new Option<Guid?>("--session") { Description = "Only runs of this session." };
        var since = new Option<string?>("--since") { Description = "Only runs created since: a duration back from now (90s, 15m, 2h, 7d) or a timestamp." };
        var limit = LimitOption.Create("How many runs to show, newest first.", 20);
        var command = new Command("list", "List runs, newest first.");
        command.Options.Add(state);
        command.Options.Add(agent);
        command.Options.Add(session);
        command.Options.Add(since);
        command.Options.Add(limit);
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var count = LimitOption.Get(parsed, limit);

            var states = (parsed.GetValue(state) ?? [])
                .SelectMany(s => s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                .Select(s => Format.ParseName<RunState>(s, "--state")).Distinct().ToList();
            var sinceText = parsed.GetValue(since);
            var query = new RunQuery
            {
                States = states.Count == 0 ? null : states,
                AgentId = parsed.GetValue(agent) is { } agentText ? await ResolveAgentAsync(context, agentText, cancellationToken).ConfigureAwait(false) : null,
                SessionId = parsed.GetValue(session),
                CreatedAfter = sinceText is null ? null : Format.Since(sinceText, CliContext.Time),
                Limit = count,
            };
            var page = await context.Client.ListRunsAsync(query, cancellationToken).ConfigureAwait(false);
            var items = page.Items.OfType<Run>().ToList();
            if (context.Json)
            {
                context.WriteJson(new { runs = items, nextCursor = page.NextCursor });
                return CliExitCodes.Success;
            }

            if (items.Count == 0)
            {
                context.WriteLine("No runs.");
                return CliExitCodes.Success;
            }

            var names = await AgentNamesAsync(context, items.Select(r => r.AgentId), cancellationToken).ConfigureAwait(false);
            var table = CliContext.Table("Id", "Agent", "State", "Mode", "Created", "Iterations", "Tokens", "Prompt / error");
            foreach (var run in items)
            {
                CliContext.AddRow(table, run.Id.ToString(), names[run.AgentId],
                    Format.Name(run.State) + (run.Depth > 0 ? $" (depth {run.Depth})" : ""), Format.Name(run.RunMode), Format.Time(run.CreatedAt),
                    run.IterationCount.ToString(CultureInfo.InvariantCulture), Format.Tokens(run.Usage),
                    run.ErrorMessage is { Length: > 0 } error ? "error: " + Format.Line(error, 60) : Format.Line(run.Prompt, 60));
            }

            context.Write(table);
            context.WriteLine(page.NextCursor is null ? $"{items.Count} run(s)." : $"{items.Count} run(s) shown; more match (raise --limit or narrow with --since).");
            return CliExitCodes.Success;
        });
        return command;
    }

    private static Command Show(CliGlobals globals)
    {
        var id = RunId();
        var command = new Command("show", "Show a run: its state, usage and error, iterations, tool calls and the tree of delegated runs.");
        command.Arguments.Add(id);
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var client = context.Client;
            var run = await client.GetRunAsync(parsed.GetValue(id), cancellationToken).ConfigureAwait(false);
            var iterations = await client.GetIterationsAsync(run.Id, cancellationToken).ConfigureAwait(false);
            var toolCalls = await client.GetRunToolCallsAsync(run.Id, cancellationToken).ConfigureAwait(false);
            var diagnostics = run.State.IsTerminal() ? null : await client.GetRunDiagnosticsAsync(run.Id, cancellationToken).ConfigureAwait(false);
            var tree = await RunTreeAsync(client, run, toolCalls, depth: 0, cancellationToken).ConfigureAwait(false);
            if (context.Json)
            {
                context.WriteJson(new { run, iterations, toolCalls, diagnostics, tree });
                return CliExitCodes.Success;
            }

            var agent = await AgentNameAsync(context, run.AgentId, cancellationToken).ConfigureAwait(false);
            var facts = new Grid().AddColumn().AddColumn();
            void Fact(string name, string? value)
            {
                if (!string.IsNullOrEmpty(value))
                {
                    facts.AddRow(new Text(name), new Text(Format.Terminal(value)));
                }
            }

            Fact("Run", run.Id.ToString());
            Fact("Agent", $"{agent} ({run.AgentId})");
            Fact("Session", run.SessionId.ToString());
            Fact("Parent run", run.ParentRunId?.ToString());
            Fact("State", Format.Name(run.State) + (run.StopReason is { } stop ? $" (stop reason {stop})" : ""));
            Fact("Mode", Format.Name(run.RunMode));
            Fact("Created", Format.Time(run.CreatedAt));
            Fact("Started", Format.Time(run.StartedAt));
            Fact("Finished", Format.Time(run.FinalizedAt));
            Fact("Claimed by", run.ClaimedByInstanceId);
            Fact("Iterations", $"{run.IterationCount} ({run.ToolIterations} with tool use)");
            Fact("Usage", Format.Tokens(run.Usage));
            Fact("Prompt", Format.Line(run.Prompt, 200));
            Fact("Response", Format.Line(run.ResponseText, 200));
            Fact("Error", run.ErrorMessage is null ? null : $"{run.ErrorType}: {run.ErrorMessage}");
            Fact("Problem", diagnostics?.Problem);
            context.Write(facts);

            if (iterations.Count > 0)
            {
                context.WriteLine();
                var table = CliContext.Table("#", "Trigger", "Stop reason", "Tool calls", "Tokens", "Started", "Error");
                foreach (var iteration in iterations)
                {
                    CliContext.AddRow(table, iteration.IterationNumber.ToString(CultureInfo.InvariantCulture), iteration.TriggerType, iteration.StopReason,
                        iteration.ToolExecutionCount.ToString(CultureInfo.InvariantCulture), Format.Tokens(iteration.Usage), Format.Time(iteration.StartedAt),
                        iteration.ErrorMessage is null ? "" : Format.Line($"{iteration.ErrorType}: {iteration.ErrorMessage}", 80));
                }

                context.WriteLine("Iterations:");
                context.Write(table);
            }

            if (toolCalls.Count > 0)
            {
                context.WriteLine();
                var table = CliContext.Table("#", "Tool", "State", "Input", "Output / error", "Duration");
                foreach (var call in toolCalls)
                {
                    CliContext.AddRow(table, call.IterationNumber.ToString(CultureInfo.InvariantCulture), call.Name + (call.IsAgentTool ? " (agent)" : ""),
                        Format.Name(call.State) + (call.Approval is { } approval ? approval.Approved ? " (approved)" : " (rejected)" : call.RequiresApproval ? " (needs approval)" : ""),
                        Format.Line(call.Input.GetRawText(), 60), call.IsError ? "error: " + Format.Line(call.ErrorMessage, 60) : Format.Line(call.Output, 60),
                        call.CompletedAt is null ? "" : Format.Duration(call.Duration));
                }

                context.WriteLine("Tool calls:");
                context.Write(table);
            }

            if (tree.Children.Count > 0)
            {
                context.WriteLine();
                var root = new Tree(new Text(tree.Label));
                AddChildren(root, tree);
                context.WriteLine("Run tree:");
                context.Write(root);
            }

            return CliExitCodes.Success;
        });
        return command;
    }

    private static Command Cancel(CliGlobals globals)
    {
        var id = RunId();
        var command = new Command("cancel", "Cancel a run that has not finished (and the runs it delegated to).");
        command.Arguments.Add(id);
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var runId = parsed.GetValue(id);
            await context.Client.CancelRunAsync(runId, cancellationToken).ConfigureAwait(false);
            var run = await context.Client.GetRunAsync(runId, cancellationToken).ConfigureAwait(false);
            if (context.Json)
            {
                context.WriteJson(new { runId, state = run.State });
            }
            else
            {
                context.WriteLine($"Run {runId} is {Format.Name(run.State)}.");
            }

            return CliExitCodes.Success;
        });
        return command;
    }

    /// <summary>A run and the runs it delegated to through agent tools, as far down as they go.</summary>
    internal sealed record RunNode(Guid RunId, string Label, IReadOnlyList<RunNode> Children);

    private static async Task<RunNode> RunTreeAsync(AgentPgClient client, Run run, IReadOnlyList<ToolCall> toolCalls, int depth, CancellationToken cancellationToken)
    {
        var children = new List<RunNode>();
        // Depth is bounded by MaxAgentDepth in the engine; the bound here only protects against a corrupted tree.
        if (depth < 16)
        {
            foreach (var call in toolCalls.Where(c => c.ChildRunId is not null))
            {
                var child = await client.GetRunAsync(call.ChildRunId!.Value, cancellationToken).ConfigureAwait(false);
                var childCalls = await client.GetRunToolCallsAsync(child.Id, cancellationToken).ConfigureAwait(false);
                children.Add(await RunTreeAsync(client, child, childCalls, depth + 1, cancellationToken).ConfigureAwait(false));
            }
        }

        return new RunNode(run.Id, $"{run.Id} {Format.Name(run.State)} {Format.Tokens(run.Usage)}", children);
    }

    private static void AddChildren(IHasTreeNodes parent, RunNode node)
    {
        foreach (var child in node.Children)
        {
            AddChildren(parent.AddNode(new Text(child.Label)), child);
        }
    }

    internal static async Task<Guid> ResolveAgentAsync(CliContext context, string text, CancellationToken cancellationToken)
        => Guid.TryParse(text, out var id)
            ? id
            : (await context.Client.GetAgentByNameAsync(text, cancellationToken: cancellationToken).ConfigureAwait(false)).Id;

    // The names of the agents a page of runs used, one lookup each (however many agents the database holds).
    private static async Task<Dictionary<Guid, string>> AgentNamesAsync(CliContext context, IEnumerable<Guid> agentIds, CancellationToken cancellationToken)
    {
        var names = new Dictionary<Guid, string>();
        foreach (var id in agentIds)
        {
            if (!names.ContainsKey(id))
            {
                names[id] = await AgentNameAsync(context, id, cancellationToken).ConfigureAwait(false);
            }
        }

        return names;
    }

    private static async Task<string> AgentNameAsync(CliContext context, Guid agentId, CancellationToken cancellationToken)
    {
        try
        {
            return (await context.Client.GetAgentByIdAsync(agentId, cancellationToken).ConfigureAwait(false)).Name;
        }
        catch (AgentPgException ex) when (ex.Code == AgentPgErrorCode.AgentNotFound)
        {
            return "(deleted agent)";
        }
    }
}
