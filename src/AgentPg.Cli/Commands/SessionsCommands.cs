using System.CommandLine;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg sessions delete</c>.</summary>
internal static class SessionsCommands
{
    public static Command Create(CliGlobals globals)
    {
        var id = new Argument<Guid>("ID") { Description = "The session's id." };
        var delete = new Command("delete", "Delete a session with its runs, messages, tool calls and child sessions (refused while a run in it is not finished).");
        delete.Arguments.Add(id);
        globals.SetAction(delete, async (parsed, context, cancellationToken) =>
        {
            var sessionId = parsed.GetValue(id);
            await context.Client.DeleteSessionAsync(sessionId, cancellationToken).ConfigureAwait(false);
            if (context.Json)
            {
                context.WriteJson(new { sessionId, deleted = true });
            }
            else
            {
                context.WriteLine($"Session {sessionId} deleted.");
            }

            return CliExitCodes.Success;
        });

        var sessions = new Command("sessions", "Sessions (conversations) stored in the database.");
        sessions.Subcommands.Add(delete);
        return sessions;
    }
}
