using System.CommandLine;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg chat --agent NAME [--session ID]</c>: an interactive conversation that streams the answers and shows the
/// tool calls as they happen. Ctrl+C cancels the run in progress; a second Ctrl+C (or one at the prompt) exits.</summary>
internal static class ChatCommand
{
    public static Command Create(CliGlobals globals)
    {
        var agent = new Option<string>("--agent") { Description = "The agent to talk to (name or id).", Required = true };
        var session = new Option<Guid?>("--session") { Description = "Continue this session (default: a new one)." };
        var fake = new Option<bool>("--fake") { Description = "Run a worker in this process on the bundled fake Claude (a demo model) when ANTHROPIC_API_KEY is unset, with the demo tools get_weather and calculate; the agent is created when missing. Without it, the runs wait for your application's workers or 'agentpg serve'." };
        var command = new Command("chat", "Chat with an agent: each line you type is a run; its answer streams as it is written. /exit or end of input quits.");
        command.Options.Add(agent);
        command.Options.Add(session);
        command.Options.Add(fake);
        globals.SetAction(command, (parsed, context, cancellationToken) =>
            RunAsync(context, parsed.GetValue(agent)!, parsed.GetValue(session), parsed.GetValue(fake), cancellationToken));
        return command;
    }

    private static async Task<int> RunAsync(CliContext context, string agentName, Guid? sessionId, bool fake, CancellationToken cancellationToken)
    {
        var claude = fake ? await ClaudeEndpoint.StartAsync(fake: true).ConfigureAwait(false) : null;
        await using var disposeClaude = (claude ?? (IAsyncDisposable)NoDispose.Instance).ConfigureAwait(false);
        AgentPgClient client;
        AgentPgClient? worker = null;
        if (claude is not null)
        {
            var options = new AgentPgOptions { Schema = context.Schema, InstanceName = "agentpg chat" };
            claude.Configure(options);
            worker = AgentPgClient.Create(context.DataSource, options);
            foreach (var tool in DemoTools.All)
            {
                worker.RegisterTool(tool);
            }

            client = worker;
        }
        else
        {
            client = context.Client;
        }

        try
        {
            var agent = claude is not null && !Guid.TryParse(agentName, out _)
                ? await ClaudeEndpoint.GetOrCreateDemoAgentAsync(client, agentName, cancellationToken).ConfigureAwait(false)
                : Guid.TryParse(agentName, out var agentId)
                    ? await client.GetAgentByIdAsync(agentId, cancellationToken).ConfigureAwait(false)
                    : await client.GetAgentByNameAsync(agentName, cancellationToken: cancellationToken).ConfigureAwait(false);
            var session = sessionId is { } existing
                ? (await client.GetSessionAsync(existing, cancellationToken).ConfigureAwait(false)).Id
                : await client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["source"] = "agentpg chat" }, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (worker is not null)
            {
                await worker.StartAsync(cancellationToken).ConfigureAwait(false);
            }

            context.WriteLine($"Chatting with {agent.Name} ({agent.Model}) in session {session}{(claude is null ? "" : $"; model: {claude.Description}")}.");
            context.WriteLine("Type a message; /exit or end of input quits. Ctrl+C cancels the answer in progress.");
            if (worker is null && (await client.ListInstancesAsync(cancellationToken).ConfigureAwait(false)).Count == 0)
            {
                context.WriteLine("No worker instance is running: answers wait until one starts (agentpg serve, or --fake for the demo model).");
            }

            var turns = 0;
            while (true)
            {
                context.Output.Write("> ");
                await context.Output.FlushAsync(cancellationToken).ConfigureAwait(false);
                var line = await context.Input.ReadLineAsync(cancellationToken).ConfigureAwait(false);
                if (line is null || line.Trim() is "/exit" or "/quit")
                {
                    break;
                }

                if (string.IsNullOrWhiteSpace(line))
                {
                    continue;
                }

                await TurnAsync(context, client, session, agent.Id, line, cancellationToken).ConfigureAwait(false);
                turns++;
            }

            context.WriteLine($"Bye. {turns} turn(s) in session {session} (continue with --session {session}).");
            return CliExitCodes.Success;
        }
        finally
        {
            if (worker is not null)
            {
                using var stopping = new CancellationTokenSource(TimeSpan.FromSeconds(30));
                await worker.StopAsync(stopping.Token).ConfigureAwait(false);
                await worker.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>One run: streams its text and tool calls until it finishes. The first Ctrl+C cancels the run (the stream then
    /// ends with the cancellation); another one exits the chat.</summary>
    private static async Task TurnAsync(CliContext context, AgentPgClient client, Guid session, Guid agentId, string prompt, CancellationToken cancellationToken)
    {
        var runId = await client.RunFastAsync(session, agentId, prompt, cancellationToken: cancellationToken).ConfigureAwait(false);
        var cancelling = 0;
        using var exit = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        using var route = context.Interrupts.Route(() =>
        {
            if (Interlocked.Exchange(ref cancelling, 1) == 0)
            {
                context.Error.WriteLine();
                context.Error.WriteLine("(cancelling the run; Ctrl+C again exits)");
                _ = client.CancelRunAsync(runId, CancellationToken.None);
            }
            else
            {
                exit.Cancel();
            }

            return true;
        });

        var atLineStart = true;
        void EnsureNewLine()
        {
            if (!atLineStart)
            {
                context.Output.WriteLine();
                atLineStart = true;
            }
        }

        await foreach (var runEvent in client.WatchRunAsync(runId, cancellationToken: exit.Token).ConfigureAwait(false))
        {
            var indent = new string(' ', 2 * runEvent.Depth);
            switch (runEvent)
            {
                case TextDeltaEvent text when runEvent.Depth == 0:
                    context.Output.Write(text.Text);
                    atLineStart = text.Text.EndsWith('\n');
                    break;
                case ToolCallStartedEvent started:
                    EnsureNewLine();
                    context.WriteLine($"{indent}[tool] {started.ToolName} {Format.Line(started.Input.GetRawText(), 200)}");
                    break;
                case ToolCallCompletedEvent completed:
                    EnsureNewLine();
                    context.WriteLine($"{indent}[tool] {completed.ToolName} {(completed.IsError ? "failed: " : "→ ")}{Format.Line(completed.Output, 200)}" +
                                      (completed.Duration is { } duration ? $" ({Format.Duration(duration)})" : ""));
                    break;
                case RunFinishedEvent finished when finished.RunId == runId:
                    EnsureNewLine();
                    if (finished.State != RunState.Completed)
                    {
                        context.WriteLine($"[run {Format.Name(finished.State)}{(finished.Error is { Length: > 0 } error ? ": " + Format.Line(error, 200) : "")}]");
                    }

                    break;
            }

            await context.Output.FlushAsync(exit.Token).ConfigureAwait(false);
        }

        EnsureNewLine();
    }

    private sealed class NoDispose : IAsyncDisposable
    {
        public static readonly NoDispose Instance = new();

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
