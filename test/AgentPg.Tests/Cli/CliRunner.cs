using AgentPg.Cli;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Cli;

/// <summary>What one in-process <c>agentpg</c> invocation wrote and returned.</summary>
public sealed record CliResult(int ExitCode, string Output, string Error)
{
    public override string ToString() => $"exit code {ExitCode}\n--- stdout ---\n{Output}\n--- stderr ---\n{Error}";
}

/// <summary>Runs <c>agentpg</c> in-process (CliApp.RunAsync, as Program.Main does) against the test database.</summary>
internal static class CliRunner
{
    /// <summary>Runs the command with --connection set to the test database and --schema to <paramref name="schema"/>.</summary>
    public static Task<CliResult> RunAsync(string schema, params string[] args)
        => RunRawAsync(["--connection", TestDatabase.ConnectionString, "--schema", schema, .. args]);

    public static async Task<CliResult> RunRawAsync(string[] args, string input = "", CliInterrupts? interrupts = null, CancellationToken cancellationToken = default)
    {
        using var output = new StringWriter();
        using var error = new StringWriter();
        using var reader = new StringReader(input);
        var exitCode = await CliApp.RunAsync(args, output, error, reader, interrupts ?? new CliInterrupts(), cancellationToken);
        return new CliResult(exitCode, output.ToString(), error.ToString());
    }
}
