using System.CommandLine;
using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg runs watch ID</c>: the live stream of a run (text, tool calls, states) through WatchRunAsync.</summary>
internal static partial class RunsCommands
{
    private static readonly JsonSerializerOptions s_eventJson = new(JsonSerializerDefaults.Web)
    {
        // JSON Lines for jq and people: text as it is (° and +), which is valid JSON; the default escapes for HTML.
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
        Converters = { new JsonStringEnumConverter() },
    };

    static partial void AddWatch(Command runs, CliGlobals globals)
    {
        var id = RunId();
        var after = new Option<long>("--after") { Description = "Resume after this event sequence (default: replay from the start)." };
        var command = new Command("watch", "Stream a run live: its text as Claude writes it, tool calls as they start and finish, tool calls waiting for approval, state changes; ends when the run finishes (exit code 0 when it completed, 1 when it failed or was cancelled). With --json: one JSON event per line.");
        command.Arguments.Add(id);
        command.Options.Add(after);
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var runId = parsed.GetValue(id);
            var afterSequence = parsed.GetValue(after);
            if (afterSequence < 0)
            {
                throw CliException.Usage($"--after {afterSequence}: give a sequence of 0 or more (0 replays from the start).");
            }

            // Unknown ids fail here with one line, before anything is streamed.
            var run = await context.Client.GetRunAsync(runId, cancellationToken).ConfigureAwait(false);
            var printer = new RunStreamPrinter(context.Output, runId, showStates: true, run.Depth);
            RunFinishedEvent? final = null;
            await foreach (var runEvent in context.Client.WatchRunAsync(runId, afterSequence, cancellationToken).ConfigureAwait(false))
            {
                if (context.Json)
                {
                    // One object per line (JSON Lines), with its type, so `jq` can filter a live stream.
                    var element = JsonSerializer.SerializeToElement(runEvent, runEvent.GetType(), s_eventJson);
                    var line = new Dictionary<string, object?> { ["type"] = runEvent.GetType().Name };
                    foreach (var property in element.EnumerateObject())
                    {
                        line[property.Name] = property.Value;
                    }

                    context.WriteLine(JsonSerializer.Serialize(line, s_eventJson));
                    await context.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
                    if (runEvent is RunFinishedEvent finished && finished.RunId == runId)
                    {
                        final = finished;
                    }
                }
                else
                {
                    await printer.WriteAsync(runEvent, cancellationToken).ConfigureAwait(false);
                    final = printer.Finished;
                }
            }

            printer.EndLine();
            // The exit code says how the run ended, so a script can wait for a run: 0 completed, 1 failed or cancelled. The
            // finish itself is not delivered when --after is past it: the stored run says.
            return final is null
                ? (await context.Client.GetRunAsync(runId, cancellationToken).ConfigureAwait(false)).State == RunState.Completed ? CliExitCodes.Success : CliExitCodes.Failure
                : final.State == RunState.Completed ? CliExitCodes.Success : CliExitCodes.Failure;
        });
        runs.Subcommands.Add(command);
    }
}
