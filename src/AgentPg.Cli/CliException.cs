namespace AgentPg.Cli;

/// <summary>A failure the CLI reports as one line: a usage error (exit code 2) or an operational one (exit code 1).</summary>
internal sealed class CliException(string message, int exitCode = CliExitCodes.Failure) : Exception(message)
{
    /// <summary>The process exit code for this failure.</summary>
    public int ExitCode { get; } = exitCode;

    public static CliException Usage(string message) => new(message, CliExitCodes.Usage);

    /// <summary>The message of <paramref name="argument"/> without .NET's <c>" (Parameter 'name')"</c> and what follows it (an
    /// out-of-range value's "Actual value was …"): the message says what to change, the parameter name means nothing to a
    /// command line.</summary>
    public static string MessageOf(ArgumentException argument)
        => argument.ParamName is { } name && argument.Message.IndexOf($" (Parameter '{name}')", StringComparison.Ordinal) is var end and >= 0
            ? argument.Message[..end]
            : argument.Message;
}

/// <summary>The exit codes scripts can test.</summary>
internal static class CliExitCodes
{
    public const int Success = 0;
    public const int Failure = 1;
    public const int Usage = 2;

    /// <summary><c>migrate status</c>: the schema is reachable but migrations are pending.</summary>
    public const int MigrationsPending = 3;

    /// <summary>Interrupted by Ctrl+C (128 + SIGINT, as shells report it).</summary>
    public const int Interrupted = 130;
}
