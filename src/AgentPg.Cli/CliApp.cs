using System.CommandLine;
using System.CommandLine.Help;
using System.Net.Sockets;
using AgentPg.Cli.Commands;
using Npgsql;

namespace AgentPg.Cli;

/// <summary>The <c>agentpg</c> command line: parses the arguments, runs one command and returns its exit code (0 success,
/// 1 failure, 2 usage, 3 pending migrations for <c>migrate status</c>, 130 interrupted). Errors are one line on the error
/// stream; <c>--verbose</c> adds the exception.</summary>
internal static class CliApp
{
    /// <summary>Runs the command line <paramref name="args"/> with the given streams (the process's console in Program, strings
    /// in tests).</summary>
    public static Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, TextReader input, CancellationToken cancellationToken = default)
        => RunAsync(args, output, error, input, new CliInterrupts(), cancellationToken);

    /// <summary>Runs the command line with Ctrl+C presses delivered through <paramref name="interrupts"/>.</summary>
    public static async Task<int> RunAsync(string[] args, TextWriter output, TextWriter error, TextReader input, CliInterrupts interrupts,
        CancellationToken cancellationToken = default)
    {
        var globals = new CliGlobals(output, error, input, interrupts);
        // A plain command named agentpg rather than RootCommand, whose name is the executable's (AgentPg.Cli when run from the
        // build output or as a tool); it gets the root's --help and --version.
        var root = new Command("agentpg", "agentpg: migrate, inspect, watch, approve, chat with and serve AgentPg agents on PostgreSQL.");
        root.Options.Add(new HelpOption());
        root.Options.Add(new VersionOption());
        root.Options.Add(globals.Connection);
        root.Options.Add(globals.Schema);
        root.Options.Add(globals.Json);
        root.Options.Add(globals.Verbose);
        root.Subcommands.Add(MigrateCommands.Create(globals));
        root.Subcommands.Add(StatusCommand.Create(globals));
        root.Subcommands.Add(AgentsCommands.Create(globals));
        root.Subcommands.Add(RunsCommands.Create(globals));
        root.Subcommands.Add(SessionsCommands.Create(globals));
        root.Subcommands.Add(CompactionsCommands.Create(globals));
        root.Subcommands.Add(UsageCommand.Create(globals));
        root.Subcommands.Add(ApprovalsCommands.Create(globals));
        root.Subcommands.Add(ChatCommand.Create(globals));
        root.Subcommands.Add(ServeCommand.Create(globals));

        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (var parseError in parsed.Errors)
            {
                await error.WriteLineAsync($"error: {parseError.Message}").ConfigureAwait(false);
            }

            await error.WriteLineAsync("Run 'agentpg --help' (or the command with --help) for usage.").ConfigureAwait(false);
            return CliExitCodes.Usage;
        }

        // Ctrl+C is handled by CliInterrupts (Program wires Console.CancelKeyPress), not by System.CommandLine.
        return await parsed.InvokeAsync(new InvocationConfiguration
        {
            Output = output,
            Error = error,
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = null,
        }, cancellationToken).ConfigureAwait(false);
    }
}

/// <summary>The options every command takes and the wrapper that turns a command's exceptions into one-line errors.</summary>
internal sealed class CliGlobals(TextWriter output, TextWriter error, TextReader input, CliInterrupts interrupts)
{
    public Option<string?> Connection { get; } = new("--connection")
    {
        Description = "The PostgreSQL connection string (default: the AGENTPG_CONNECTION environment variable).",
        Recursive = true,
    };

    public Option<string> Schema { get; } = new("--schema")
    {
        Description = "The PostgreSQL schema holding AgentPg's tables.",
        DefaultValueFactory = _ => "public",
        Recursive = true,
    };

    public Option<bool> Json { get; } = new("--json")
    {
        Description = "Write JSON for scripts instead of tables.",
        Recursive = true,
    };

    public Option<bool> Verbose { get; } = new("--verbose")
    {
        Description = "Show the full exception (with its stack trace) when a command fails.",
        Recursive = true,
    };

    /// <summary>Sets <paramref name="command"/>'s action: builds the context, runs <paramref name="action"/> and maps failures
    /// to exit codes and one-line messages.</summary>
    public void SetAction(Command command, Func<ParseResult, CliContext, CancellationToken, Task<int>> action)
        => command.SetAction(async (parsed, cancellationToken) =>
        {
            var connection = parsed.GetValue(Connection);
            if (string.IsNullOrWhiteSpace(connection))
            {
                connection = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION");
            }

            var verbose = parsed.GetValue(Verbose);
            var context = new CliContext(output, error, input, interrupts, connection, parsed.GetValue(Schema) ?? "public",
                parsed.GetValue(Json), verbose);
            await using var disposeContext = context.ConfigureAwait(false);
            using var interrupted = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            using var route = interrupts.Route(() =>
            {
                interrupted.Cancel();
                return true;
            });
            try
            {
                return await action(parsed, context, interrupted.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (Describe(ex, context, interrupted.Token) is { } failure)
            {
                // One line, whatever the message holds; messages can quote stored text (PostgreSQL's details, names): inert for the
                // terminal like every other output.
                await error.WriteLineAsync($"error: {Format.Terminal(OneLine(failure.Message))}").ConfigureAwait(false);
                if (verbose)
                {
                    await error.WriteLineAsync(Format.Terminal(ex.ToString())).ConfigureAwait(false);
                }

                return failure.ExitCode;
            }
        });

    /// <summary>The one line (and exit code) for a failure; null for nothing (never: every exception gets a line).</summary>
    private static CliException? Describe(Exception exception, CliContext context, CancellationToken cancellationToken)
    {
        switch (exception)
        {
            case CliException cli:
                return cli;
            case OperationCanceledException when cancellationToken.IsCancellationRequested:
                return new CliException("interrupted.", CliExitCodes.Interrupted);
            case AgentPgException agentPg:
                return new CliException(agentPg.Code switch
                {
                    AgentPgErrorCode.SchemaVersionMismatch => agentPg.Message.Contains("not migrated", StringComparison.Ordinal)
                        ? $"the AgentPg schema \"{context.Schema}\" on {context.DatabaseDescription} is not migrated: run 'agentpg migrate{(context.Schema == "public" ? "" : $" --schema {context.Schema}")}'."
                        : agentPg.Message,
                    _ => agentPg.Message,
                });
            case PostgresException postgres:
                return new CliException($"PostgreSQL at {context.DatabaseDescription}: {postgres.MessageText} ({postgres.SqlState}).");
            case NpgsqlException npgsql when IsUnreachable(npgsql):
                return new CliException($"cannot connect to PostgreSQL at {context.DatabaseDescription}: {Innermost(npgsql).Message} " +
                                        "(check --connection or AGENTPG_CONNECTION).");
            case NpgsqlException npgsql:
                return new CliException($"PostgreSQL at {context.DatabaseDescription}: {npgsql.Message}");
            case ArgumentException argument:
                return CliException.Usage(CliException.MessageOf(argument));
            default:
                return new CliException($"{exception.GetType().Name}: {exception.Message}");
        }
    }

    /// <summary>A message on one line: its lines joined with a space (AgentPgOptions lists each invalid option on a line of its own).</summary>
    private static string OneLine(string message)
        => string.Join(' ', message.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));

    private static bool IsUnreachable(NpgsqlException exception)
        => exception.InnerException is SocketException or TimeoutException or IOException
           || exception.Message.Contains("Failed to connect", StringComparison.Ordinal);

    private static Exception Innermost(Exception exception)
    {
        while (exception.InnerException is not null)
        {
            exception = exception.InnerException;
        }

        return exception;
    }
}
