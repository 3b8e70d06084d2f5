using System.Text.Json;
using System.Text.Json.Serialization;
using Npgsql;
using Spectre.Console;
using Spectre.Console.Rendering;

namespace AgentPg.Cli;

/// <summary>What one command invocation works with: its streams, the global options and, on demand, the database.</summary>
internal sealed class CliContext : IAsyncDisposable
{
    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web)
    {
        WriteIndented = true,
        Converters = { new JsonStringEnumConverter() },
    };

    private NpgsqlDataSource? _dataSource;
    private AgentPgClient? _client;
    private Task<string?>? _pendingRead;

    public CliContext(TextWriter output, TextWriter error, TextReader input, CliInterrupts interrupts, string? connection,
        string schema, bool json, bool verbose)
    {
        Output = output;
        Error = error;
        Input = input;
        Interrupts = interrupts;
        ConnectionString = connection;
        Schema = schema;
        Json = json;
        Verbose = verbose;
        Console = CreateConsole(output);
    }

    public TextWriter Output { get; }

    public TextWriter Error { get; }

    public TextReader Input { get; }

    public CliInterrupts Interrupts { get; }

    /// <summary>Whether a person types the input (the console, not redirected): what they type is already on the screen.</summary>
    public bool InputIsTerminal => ReferenceEquals(Input, System.Console.In) && !System.Console.IsInputRedirected;

    /// <summary>Tables, trees and progress; plain text without colours unless the output is a terminal.</summary>
    public IAnsiConsole Console { get; }

    public string? ConnectionString { get; }

    public string Schema { get; }

    public bool Json { get; }

    public bool Verbose { get; }

    public static TimeProvider Time => TimeProvider.System;

    /// <summary>The data source for --connection (or AGENTPG_CONNECTION).</summary>
    public NpgsqlDataSource DataSource => _dataSource ??= CreateDataSource();

    /// <summary>A client on the schema that is never started: it reads and writes through AgentPg's API only.</summary>
    public AgentPgClient Client => _client ??= AgentPgClient.Create(DataSource, new AgentPgOptions { Schema = Schema });

    /// <summary>Describes the database for messages: host, port and database name, never the password.</summary>
    public string DatabaseDescription
    {
        get
        {
            try
            {
                var builder = new NpgsqlConnectionStringBuilder(ConnectionString);
                return $"{builder.Host ?? "localhost"}:{builder.Port}/{builder.Database ?? builder.Username ?? "postgres"}";
            }
            catch (ArgumentException)
            {
                return "the configured database";
            }
        }
    }

    /// <summary>Reads a line of input; <see langword="null"/> at the end of the input. Cancellation abandons the wait, not the
    /// read (a console read cannot be interrupted): the next call receives that line.</summary>
    public async Task<string?> ReadLineAsync(CancellationToken cancellationToken)
    {
        // Console.In reads synchronously even through ReadLineAsync: on a thread of its own, so Ctrl+C can stop waiting.
        _pendingRead ??= Task.Run(Input.ReadLine, CancellationToken.None);
        var line = await _pendingRead.WaitAsync(cancellationToken).ConfigureAwait(false);
        _pendingRead = null;
        return line;
    }

    public void WriteJson<T>(T value) => Output.WriteLine(JsonSerializer.Serialize(value, s_json));

    public void WriteLine(string text = "") => Output.WriteLine(text);

    public void Write(IRenderable renderable) => Console.Write(renderable);

    /// <summary>A table whose cells are plain text (never parsed as markup: ids, prompts and errors can hold brackets), with their
    /// control characters made inert (<see cref="Format.Terminal"/>).</summary>
    public static Table Table(params string[] columns)
    {
        var table = new Table().Border(TableBorder.Rounded);
        foreach (var column in columns)
        {
            table.AddColumn(new TableColumn(new Text(column)));
        }

        return table;
    }

    public static void AddRow(Table table, params string?[] cells) => table.AddRow(cells.Select(c => (IRenderable)new Text(Format.Terminal(c))).ToArray());

    public async ValueTask DisposeAsync()
    {
        if (_client is not null)
        {
            await _client.DisposeAsync().ConfigureAwait(false);
        }

        if (_dataSource is not null)
        {
            await _dataSource.DisposeAsync().ConfigureAwait(false);
        }
    }

    private NpgsqlDataSource CreateDataSource()
    {
        if (string.IsNullOrWhiteSpace(ConnectionString))
        {
            throw CliException.Usage("no database: pass --connection \"Host=…;Username=…;Database=…\" or set AGENTPG_CONNECTION.");
        }

        try
        {
            return NpgsqlDataSource.Create(ConnectionString);
        }
        catch (ArgumentException ex)
        {
            throw CliException.Usage($"the connection string is not valid: {ex.Message}");
        }
    }

    private static IAnsiConsole CreateConsole(TextWriter output)
    {
        var terminal = ReferenceEquals(output, System.Console.Out) && !System.Console.IsOutputRedirected;
        var console = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Ansi = terminal ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = terminal ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = terminal ? InteractionSupport.Detect : InteractionSupport.No,
            Out = new AnsiConsoleOutput(output),
        });
        if (!terminal)
        {
            // Redirected output is read by programs and people's pagers: wide enough that ids are never wrapped.
            console.Profile.Width = 240;
        }

        return console;
    }
}
