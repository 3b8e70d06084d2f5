using System.CommandLine;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg runs watch ID</c>: the live stream of a run (text, tool calls, states) through WatchRunAsync.</summary>
internal static partial class RunsCommands
{
    private static readonly JsonSerializerOptions s_eventJson = new(JsonSerializerDefaults.Web) { Converters = { new JsonStringEnumConverter() } };

    static partial void AddWatch(Command runs, CliGlobals globals)
    {
        var id = RunId();
        var after = new Option<long>("--after") { Description = "Resume after this event sequence (default: replay from the start)." };
        var command = new Command("watch", "Stream a run live: its text as Claude writes it, tool calls as they start and finish, state changes; ends when the run finishes. With --json: one JSON event per line.");
        command.Arguments.Add(id);
        command.Options.Add(after);
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var runId = parsed.GetValue(id);
            // Unknown ids fail here with one line, before anything is streamed.
            await context.Client.GetRunAsync(runId, cancellationToken).ConfigureAwait(false);
            var atLineStart = true;
            RunFinishedEvent? final = null;
            await foreach (var runEvent in context.Client.WatchRunAsync(runId, parsed.GetValue(after), cancellationToken).ConfigureAwait(false))
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
                }
                else
                {
                    var indent = new string(' ', 2 * runEvent.Depth);
                    string? text = runEvent switch
                    {
                        TextDeltaEvent delta => null,
                        RunStateChangedEvent state => $"{indent}[state] {Format.Name(state.State)}{(runEvent.Depth > 0 ? $" (run {runEvent.RunId})" : "")}",
                        IterationStartedEvent iteration => $"{indent}[iteration {iteration.IterationNumber}]",
                        ToolCallStartedEvent started => $"{indent}[tool] {started.ToolName} {Format.Line(started.Input.GetRawText(), 200)}",
                        ToolCallCompletedEvent completed => $"{indent}[tool] {completed.ToolName} {(completed.IsError ? "failed: " : "→ ")}{Format.Line(completed.Output, 200)}",
                        RunFinishedEvent finished => $"{indent}[finished] {Format.Name(finished.State)}{(finished.Error is { Length: > 0 } error ? ": " + Format.Line(error, 200) : "")}",
                        _ => "",
                    };
                    if (runEvent is TextDeltaEvent textDelta)
                    {
                        context.Output.Write(runEvent.Depth == 0 ? textDelta.Text : "");
                        atLineStart = runEvent.Depth == 0 ? textDelta.Text.EndsWith('\n') : atLineStart;
                    }
                    else if (text is { Length: > 0 })
                    {
                        if (!atLineStart)
                        {
                            context.WriteLine();
                        }

                        context.WriteLine(text);
                        atLineStart = true;
                    }
                }

                if (runEvent is RunFinishedEvent finishedEvent && finishedEvent.RunId == runId)
                {
                    final = finishedEvent;
                }

                await context.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
            }

            // The exit code says how the run ended, so a script can wait for a run: 0 completed, 1 failed or cancelled.
            return final?.State == RunState.Completed ? CliExitCodes.Success : CliExitCodes.Failure;
        });
        runs.Subcommands.Add(command);
    }
}
