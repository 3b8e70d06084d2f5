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

/// <summary>An in-process <c>agentpg</c> invocation whose output can be read while it runs.</summary>
internal sealed class LiveCliRun
{
    private readonly StringWriter _outputText = new();
    private readonly StringWriter _errorText = new();
    private readonly TextWriter _output;
    private readonly TextWriter _error;

    private LiveCliRun()
    {
        // The command writes from its own tasks while the test reads: synchronized writers lock on themselves, as Read does.
        _output = TextWriter.Synchronized(_outputText);
        _error = TextWriter.Synchronized(_errorText);
    }

    public Task<CliResult> Completion { get; private set; } = null!;

    public string Output => Read(_output, _outputText);

    public static LiveCliRun Start(string schema, params string[] args) => Start(schema, TextReader.Null, new CliInterrupts(), args);

    public static LiveCliRun Start(string schema, TextReader input, CliInterrupts interrupts, params string[] args)
    {
        var run = new LiveCliRun();
        run.Completion = run.RunAsync(["--connection", TestDatabase.ConnectionString, "--schema", schema, .. args], input, interrupts);
        return run;
    }

    private async Task<CliResult> RunAsync(string[] args, TextReader input, CliInterrupts interrupts)
    {
        var exitCode = await CliApp.RunAsync(args, _output, _error, input, interrupts);
        return new CliResult(exitCode, Read(_output, _outputText), Read(_error, _errorText));
    }

    private static string Read(TextWriter writer, StringWriter text)
    {
        lock (writer)
        {
            return text.ToString();
        }
    }
}

/// <summary>Input typed by a person, line by line: <see cref="TextReader.ReadLine"/> waits for the next <see cref="Type"/>.</summary>
internal sealed class TypedInput : TextReader
{
    private readonly System.Collections.Concurrent.BlockingCollection<string?> _lines = [];

    public void Type(string line) => _lines.Add(line);

    /// <summary>Ends the input (Ctrl+D), releasing a read still waiting.</summary>
    public void End() => _lines.Add(null);

    public override string? ReadLine() => _lines.Take();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            End();
            _lines.Dispose();
        }

        base.Dispose(disposing);
    }
}

/// <summary>A terminal whose flush waits, once <c>marker</c> has been written, until <see cref="Release"/>: it holds the command
/// right after it printed that line (the flush ignores the command's token, as a terminal already flushing does).</summary>
internal sealed class HeldFlushWriter(string marker) : TextWriter
{
    private readonly System.Text.StringBuilder _text = new();
    private readonly TaskCompletionSource _held = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override System.Text.Encoding Encoding => System.Text.Encoding.UTF8;

    /// <summary>Completes when a flush after the marker started waiting.</summary>
    public Task Held => _held.Task;

    public void Release() => _release.TrySetResult();

    public override void Write(char value)
    {
        lock (_text)
        {
            _text.Append(value);
        }
    }

    public override void Write(string? value)
    {
        lock (_text)
        {
            _text.Append(value);
        }
    }

    public override void Write(char[] buffer, int index, int count)
    {
        lock (_text)
        {
            _text.Append(buffer, index, count);
        }
    }

    public override Task WriteAsync(string? value)
    {
        Write(value);
        return Task.CompletedTask;
    }

    public override Task WriteLineAsync(string? value)
    {
        WriteLine(value);
        return Task.CompletedTask;
    }

    public override Task FlushAsync() => FlushAsync(CancellationToken.None);

    public override async Task FlushAsync(CancellationToken cancellationToken)
    {
        if (!_held.Task.IsCompleted && ToString().Contains(marker, StringComparison.Ordinal))
        {
            _held.TrySetResult();
            await _release.Task;
        }
    }

    public override string ToString()
    {
        lock (_text)
        {
            return _text.ToString();
        }
    }
}
