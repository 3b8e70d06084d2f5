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

            context.WriteLine($"Chatting with {Format.Terminal(agent.Name)} ({Format.Terminal(agent.Model)}) in session {session}{(claude is null ? "" : $"; model: {claude.Description}")}.");
            context.WriteLine("Type a message; /exit or end of input quits. Ctrl+C cancels the answer in progress.");
            if (worker is null && (await client.ListInstancesAsync(cancellationToken).ConfigureAwait(false)).Count == 0)
            {
                context.WriteLine("No worker instance is running: answers wait until one starts (agentpg serve, or --fake for the demo model).");
            }

            var turns = 0;
            var exitCode = CliExitCodes.Success;
            // Cancelled by Ctrl+C at the prompt, and by a second Ctrl+C during a run: whenever that press lands (even as the run's
            // stream ends on its own), the chat ends.
            using var leaving = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            while (true)
            {
                context.Output.Write("> ");
                await context.Output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
                string? line;
                try
                {
                    line = await context.ReadLineAsync(leaving.Token).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (leaving.IsCancellationRequested)
                {
                    // Ctrl+C at the prompt: nothing is running, the chat ends.
                    context.WriteLine();
                    exitCode = CliExitCodes.Interrupted;
                    break;
                }

                if (line is null || line.Trim() is "/exit" or "/quit")
                {
                    if (line is null || !context.InputIsTerminal)
                    {
                        // End of input (Ctrl+D) leaves the cursor after the prompt; a script's /exit is not on the screen.
                        context.WriteLine(line ?? "");
                    }

                    break;
                }

                if (!context.InputIsTerminal)
                {
                    // A script's input is not on the screen: show it, so the transcript reads as a conversation.
                    context.WriteLine(line);
                }

                if (string.IsNullOrWhiteSpace(line))
                {
                    continue;
                }

                turns++;
                if (!await TurnAsync(context, client, session, agent.Id, line, leaving, cancellationToken).ConfigureAwait(false))
                {
                    exitCode = CliExitCodes.Interrupted;
                    break;
                }
            }

            context.WriteLine($"Bye. {turns} turn(s) in session {session} (continue with --session {session}).");
            return exitCode;
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

    /// <summary>One run: streams its text and tool calls until it finishes, asking for a decision on each tool call that needs
    /// approval. The first Ctrl+C cancels the run (the stream then ends with the cancellation); another one exits the chat
    /// (<paramref name="exit"/>). Returns false when the chat should end (Ctrl+C twice, or the input ended while a tool call
    /// waited for a decision).</summary>
    private static async Task<bool> TurnAsync(CliContext context, AgentPgClient client, Guid session, Guid agentId, string prompt,
        CancellationTokenSource exit, CancellationToken cancellationToken)
    {
        using var cancelling = new CancellationTokenSource();
        var gate = new Lock();
        Guid? created = null;
        var cancel = Task.CompletedTask;
        // Routed before the run exists, so a Ctrl+C while it is being created cancels it too.
        using var route = context.Interrupts.Route(() =>
        {
            if (!cancelling.IsCancellationRequested)
            {
                context.Error.WriteLine();
                context.Error.WriteLine("(cancelling the run; Ctrl+C again exits)");
                lock (gate)
                {
                    cancelling.Cancel();
                    if (created is { } id)
                    {
                        cancel = CancelAsync(context, client, id);
                    }
                }
            }
            else
            {
                exit.Cancel();
            }

            return true;
        });

        // Not interrupted by Ctrl+C (routed here): once asked for, the run is created, then cancelled.
        var runId = await client.RunFastAsync(session, agentId, prompt, cancellationToken: cancellationToken).ConfigureAwait(false);
        lock (gate)
        {
            created = runId;
            if (cancelling.IsCancellationRequested)
            {
                cancel = CancelAsync(context, client, runId);
            }
        }

        var printer = new RunStreamPrinter(context.Output, runId, showStates: false);
        try
        {
            await foreach (var runEvent in client.WatchRunAsync(runId, cancellationToken: exit.Token).ConfigureAwait(false))
            {
                if (await printer.WriteAsync(runEvent, exit.Token).ConfigureAwait(false) is { } request && !cancelling.IsCancellationRequested
                    && !await DecideAsync(context, client, printer, request, cancelling.Token, exit.Token).ConfigureAwait(false))
                {
                    return false;
                }
            }
        }
        catch (OperationCanceledException) when (exit.IsCancellationRequested)
        {
            printer.Line("(stopped watching; the run goes on being cancelled)");
            return false;
        }
        finally
        {
            printer.EndLine();
            // A cancellation asked for by Ctrl+C is recorded (or reported) before the chat goes on or ends.
            Task cancelled;
            lock (gate)
            {
                cancelled = cancel;
            }

            await cancelled.ConfigureAwait(false);
        }

        // The second Ctrl+C can land after the cancellation ended the stream, while this turn still handles the presses.
        return !exit.IsCancellationRequested;
    }

    /// <summary>Asks whether to run a tool call that waits for approval: y approves, anything else rejects (with the text as
    /// the reason the model reads). Returns false when the input ended (the call stays waiting).</summary>
    private static async Task<bool> DecideAsync(CliContext context, AgentPgClient client, RunStreamPrinter printer, ApprovalRequestedEvent request,
        CancellationToken cancelling, CancellationToken exit)
    {
        context.Output.Write($"Run {Format.Terminal(request.ToolName)}? y approves; n, or a reason, rejects: ");
        await context.Output.FlushAsync(CancellationToken.None).ConfigureAwait(false);
        string? answer;
        using (var either = CancellationTokenSource.CreateLinkedTokenSource(cancelling, exit))
        {
            try
            {
                answer = await context.ReadLineAsync(either.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (cancelling.IsCancellationRequested && !exit.IsCancellationRequested)
            {
                // Ctrl+C while asking: the run is being cancelled, which settles the call.
                context.WriteLine();
                return true;
            }
        }

        if (answer is null)
        {
            printer.Line($"(end of input: tool call {request.ToolExecutionId} keeps waiting; decide with 'agentpg approvals approve|reject {request.ToolExecutionId}')");
            return false;
        }

        if (!context.InputIsTerminal)
        {
            context.WriteLine(answer);
        }

        var text = answer.Trim();
        try
        {
            if (text.Equals("y", StringComparison.OrdinalIgnoreCase) || text.Equals("yes", StringComparison.OrdinalIgnoreCase))
            {
                await client.ApproveToolCallAsync(request.ToolExecutionId, null, null, Environment.UserName, exit).ConfigureAwait(false);
            }
            else
            {
                var reason = text.Length == 0 || text.Equals("n", StringComparison.OrdinalIgnoreCase) || text.Equals("no", StringComparison.OrdinalIgnoreCase)
                    ? "The user rejected this tool call."
                    : text;
                await client.RejectToolCallAsync(request.ToolExecutionId, reason, Environment.UserName, exit).ConfigureAwait(false);
            }
        }
        catch (AgentPgException ex)
        {
            // Decided meanwhile by someone else (agentpg approvals, the admin UI), timed out, or the run was cancelled.
            printer.Line($"(not decided here: {ex.Message})");
        }

        return true;
    }

    private static async Task CancelAsync(CliContext context, AgentPgClient client, Guid runId)
    {
        try
        {
            await client.CancelRunAsync(runId, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is AgentPgException or Npgsql.NpgsqlException or TimeoutException)
        {
            await context.Error.WriteLineAsync($"error: could not cancel run {runId}: {ex.Message}").ConfigureAwait(false);
        }
    }

    private sealed class NoDispose : IAsyncDisposable
    {
        public static readonly NoDispose Instance = new();

        public ValueTask DisposeAsync() => ValueTask.CompletedTask;
    }
}
