using System.CommandLine;
using System.Text.Json;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg approvals list|approve ID|reject ID --reason</c>.</summary>
internal static class ApprovalsCommands
{
    public static Command Create(CliGlobals globals)
    {
        return new Command("approvals", "Tool calls waiting for a person's decision.") { List(globals), Approve(globals), Reject(globals) };
    }

    private static Argument<Guid> ExecutionId() => new("ID") { Description = "The tool execution's id (from 'approvals list')." };

    private static Option<string?> DecidedBy() => new("--by")
    {
        Description = "Who decides, recorded with the decision (default: the user name of this process).",
    };

    private static string DecidedBy(ParseResult parsed, Option<string?> by) => parsed.GetValue(by) ?? Environment.UserName;

    private static Command List(CliGlobals globals)
    {
        var session = new Option<Guid?>("--session") { Description = "Only the approvals of this session." };
        var limit = LimitOption.Create("How many to show, oldest first.", 100);
        var command = new Command("list", "List the tool calls waiting for approval, oldest first.") { session, limit };
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var count = LimitOption.Get(parsed, limit);

            var pending = await context.Client.GetPendingApprovalsAsync(parsed.GetValue(session), limit: count, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (context.Json)
            {
                context.WriteJson(pending);
                return CliExitCodes.Success;
            }

            if (pending.Count == 0)
            {
                context.WriteLine("No tool calls are waiting for approval.");
                return CliExitCodes.Success;
            }

            var table = CliContext.Table("Id", "Tool", "Input", "Run", "Root run", "Requested");
            foreach (var request in pending)
            {
                CliContext.AddRow(table, request.ToolExecutionId.ToString(), request.ToolName, Format.Line(request.Input.GetRawText(), 80),
                    request.RunId.ToString(), request.RootRunId == request.RunId ? "" : request.RootRunId.ToString(), Format.Time(request.RequestedAt));
            }

            context.Write(table);
            context.WriteLine($"{pending.Count} waiting. Decide with 'agentpg approvals approve ID' or 'agentpg approvals reject ID --reason \"…\"'.");
            return CliExitCodes.Success;
        });
        return command;
    }

    private static Command Approve(CliGlobals globals)
    {
        var id = ExecutionId();
        var input = new Option<string?>("--input") { Description = "Run the tool with this JSON input instead of the model's (checked against the tool's schema)." };
        var comment = new Option<string?>("--comment") { Description = "A note recorded with the decision." };
        var by = DecidedBy();
        var command = new Command("approve", "Approve a tool call: the tool runs and the agent continues.");
        command.Arguments.Add(id);
        command.Options.Add(input);
        command.Options.Add(comment);
        command.Options.Add(by);
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            JsonElement? edited = null;
            if (parsed.GetValue(input) is { } json)
            {
                try
                {
                    using var document = JsonDocument.Parse(json);
                    edited = document.RootElement.Clone();
                }
                catch (JsonException ex)
                {
                    throw CliException.Usage($"--input is not valid JSON: {ex.Message}");
                }
            }

            var executionId = parsed.GetValue(id);
            await context.Client.ApproveToolCallAsync(executionId, edited, parsed.GetValue(comment), DecidedBy(parsed, by),
                cancellationToken).ConfigureAwait(false);
            Report(context, executionId, approved: true);
            return CliExitCodes.Success;
        });
        return command;
    }

    private static Command Reject(CliGlobals globals)
    {
        var id = ExecutionId();
        var reason = new Option<string>("--reason") { Description = "Why: the model reads it as the tool's error result.", Required = true };
        var by = DecidedBy();
        var command = new Command("reject", "Reject a tool call: the model gets the reason as the tool's error and continues.");
        command.Arguments.Add(id);
        command.Options.Add(reason);
        command.Options.Add(by);
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var executionId = parsed.GetValue(id);
            var why = parsed.GetValue(reason);
            if (string.IsNullOrWhiteSpace(why))
            {
                throw CliException.Usage("--reason must not be empty: the model reads it.");
            }

            await context.Client.RejectToolCallAsync(executionId, why, DecidedBy(parsed, by), cancellationToken).ConfigureAwait(false);
            Report(context, executionId, approved: false);
            return CliExitCodes.Success;
        });
        return command;
    }

    private static void Report(CliContext context, Guid executionId, bool approved)
    {
        if (context.Json)
        {
            context.WriteJson(new { toolExecutionId = executionId, approved });
        }
        else
        {
            context.WriteLine(approved ? $"Approved tool call {executionId}." : $"Rejected tool call {executionId}.");
        }
    }
}
