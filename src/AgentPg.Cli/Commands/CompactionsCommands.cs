using System.CommandLine;
using System.Globalization;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg compactions list|restore ID</c>.</summary>
internal static class CompactionsCommands
{
    public static Command Create(CliGlobals globals)
    {
        return new Command("compactions", "Compactions of sessions' conversations: list them, and undo one.") { List(globals), Restore(globals) };
    }

    private static Command List(CliGlobals globals)
    {
        var session = new Option<Guid?>("--session") { Description = "Only the compactions of this session." };
        var limit = LimitOption.Create("How many to show, newest first.", 20);
        var command = new Command("list", "List compactions, newest first.") { session, limit };
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var page = await context.Client.ListCompactionEventsAsync(new CompactionEventQuery
            {
                SessionId = parsed.GetValue(session),
                Limit = LimitOption.Get(parsed, limit),
            }, cancellationToken).ConfigureAwait(false);
            if (context.Json)
            {
                context.WriteJson(new { compactions = page.Items, nextCursor = page.NextCursor });
                return CliExitCodes.Success;
            }

            if (page.Items.Count == 0)
            {
                context.WriteLine("No compactions.");
                return CliExitCodes.Success;
            }

            var table = CliContext.Table("Id", "Session", "When", "Strategy", "Tokens", "Removed", "Pruned", "Reason", "Restored");
            foreach (var e in page.Items)
            {
                CliContext.AddRow(table, e.Id.ToString(), e.SessionId.ToString(), Format.Time(e.CreatedAt), Format.Name(e.Strategy),
                    $"{e.OriginalTokens.ToString("N0", CultureInfo.InvariantCulture)} → {e.CompactedTokens.ToString("N0", CultureInfo.InvariantCulture)}",
                    e.MessagesRemoved.ToString(CultureInfo.InvariantCulture), e.MessagesPruned.ToString(CultureInfo.InvariantCulture),
                    Format.Line(e.Reason, 40), e.RestoredAt is { } restored ? Format.Time(restored) : "");
            }

            context.Write(table);
            context.WriteLine(page.NextCursor is null
                ? $"{page.Items.Count} compaction(s). Undo the newest of a session with 'agentpg compactions restore ID'."
                : $"{page.Items.Count} compaction(s) shown; more match (raise --limit or narrow with --session).");
            return CliExitCodes.Success;
        });
        return command;
    }

    private static Command Restore(CliGlobals globals)
    {
        var id = new Argument<Guid>("ID") { Description = "The compaction's id (from 'compactions list')." };
        var command = new Command("restore",
            "Undo a compaction: the archived messages come back as they were and its summary is removed (restore a session's later compactions first).")
        {
            id,
        };
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var eventId = parsed.GetValue(id);
            await context.Client.RestoreCompactionAsync(eventId, cancellationToken).ConfigureAwait(false);
            if (context.Json)
            {
                context.WriteJson(new { compactionId = eventId, restored = true });
            }
            else
            {
                context.WriteLine($"Compaction {eventId} restored.");
            }

            return CliExitCodes.Success;
        });
        return command;
    }
}
