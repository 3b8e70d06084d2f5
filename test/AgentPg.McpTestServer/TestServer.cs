using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;
using ModelContextProtocol.Server;

namespace AgentPg.McpTestServer;

/// <summary>The test server's tools, written with the SDK's low-level handlers so each tool's JSON Schema is exactly
/// what the tests compare against.</summary>
public sealed class TestServer
{
    /// <summary>A schema with keywords AgentPg's ToolSchema does not model: anyOf, enum of mixed types, nested objects,
    /// format, $ref/$defs, additionalProperties.</summary>
    public const string LookupSchema = """
        {
          "type": "object",
          "description": "What to look up",
          "properties": {
            "id": { "anyOf": [ { "type": "string", "format": "uuid" }, { "type": "integer", "minimum": 1 } ] },
            "mode": { "enum": ["fast", "thorough", 3] },
            "filter": {
              "type": "object",
              "properties": {
                "since": { "type": "string", "format": "date" },
                "tags": { "type": "array", "items": { "$ref": "#/$defs/tag" }, "maxItems": 3 }
              },
              "required": ["since"],
              "additionalProperties": false
            }
          },
          "required": ["id"],
          "additionalProperties": false,
          "$defs": { "tag": { "type": "string", "pattern": "^[a-z]+$" } }
        }
        """;

    /// <summary>A tool name long enough that a 30-character server name makes <c>{Name}__{tool}</c> longer than 64.</summary>
    public const string LongToolName = "a_tool_with_a_rather_long_name_for_limits";

    private const string EchoSchema = """{ "type": "object", "properties": { "message": { "type": "string" } }, "required": ["message"] }""";
    private const string AddSchema = """{ "type": "object", "properties": { "a": { "type": "number" }, "b": { "type": "number" } }, "required": ["a", "b"] }""";
    private const string EmptySchema = """{ "type": "object", "properties": {} }""";

    private readonly string? _eventsFile;
    private volatile bool _late;

    /// <summary>Creates the server state.</summary>
    /// <param name="eventsFile">A file every event is appended to (for a test that runs the server as a process).</param>
    public TestServer(string? eventsFile = null)
    {
        _eventsFile = eventsFile;
    }

    /// <summary>Gets names of tools the server offers besides its own (each answers <c>NAME called</c>), for example names
    /// Claude would refuse.</summary>
    public IReadOnlyList<string> ExtraTools { get; init; } = [];

    /// <summary>Gets what happened, in order: <c>called NAME</c>, <c>started wait</c>, <c>cancelled wait</c> …</summary>
    public ConcurrentQueue<string> Events { get; } = new();

    /// <summary>Configures an SDK server with this server's tools.</summary>
    /// <param name="options">The SDK options.</param>
    public void Configure(McpServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.ServerInfo = new Implementation { Name = "agentpg-test-server", Version = "1.0.0" };
        options.Capabilities = new ServerCapabilities { Tools = new ToolsCapability { ListChanged = true } };
        options.Handlers = new McpServerHandlers
        {
            ListToolsHandler = ListToolsAsync,
            CallToolHandler = CallAsync,
        };
    }

    /// <summary>Gets whether the first tools/list adds the tool 'late' after taking the list it answers, and sends
    /// tools/list_changed before that answer (a change while the client connects).</summary>
    public bool ChangeToolsDuringFirstList { get; init; }

    /// <summary>Gets whether the server offers the tool 'regional', whose 'region' parameter is annotated with
    /// <c>x-mcp-header</c> (over Streamable HTTP, the client mirrors it in an <c>Mcp-Param-Region</c> header).</summary>
    public bool HeaderTool { get; init; }

    /// <summary>The input schema of 'regional'.</summary>
    public const string RegionalSchema = """{ "type": "object", "properties": { "region": { "type": "string", "x-mcp-header": "Region" } }, "required": ["region"] }""";

    /// <summary>Gets whether tools/list never answers (a server stuck after the handshake).</summary>
    public bool HangOnList { get; init; }

    /// <summary>Gets how many tools each tools/list page holds (with <c>nextCursor</c> to the next); 0: one page.</summary>
    public int PageSize { get; init; }

    private int _lists;

    private async ValueTask<ListToolsResult> ListToolsAsync(RequestContext<ListToolsRequestParams> context, CancellationToken cancellationToken)
    {
        Record($"listed {context.Params?.Cursor}");
        if (HangOnList)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
        }

        var tools = Tools();
        if (PageSize > 0)
        {
            var start = context.Params?.Cursor is { } cursor ? int.Parse(cursor, CultureInfo.InvariantCulture) : 0;
            return new ListToolsResult
            {
                Tools = [.. tools.Skip(start).Take(PageSize)],
                NextCursor = start + PageSize < tools.Count ? (start + PageSize).ToString(CultureInfo.InvariantCulture) : null,
            };
        }

        var result = new ListToolsResult { Tools = tools };
        if (ChangeToolsDuringFirstList && Interlocked.Increment(ref _lists) == 1)
        {
            _late = true;
            await context.Server.SendNotificationAsync(NotificationMethods.ToolListChangedNotification, cancellationToken).ConfigureAwait(false);
        }

        return result;
    }

    private List<Tool> Tools()
    {
        var tools = new List<Tool>
        {
            Tool("echo", "Echoes a message back", EchoSchema),
            Tool("add", "Adds two numbers", AddSchema),
            Tool("lookup", "Looks an item up", LookupSchema),
            Tool("pid", "Returns the server's process id", EmptySchema),
            Tool("wait", "Waits until cancelled", EmptySchema),
            Tool("grow", "Adds the tool 'late'", EmptySchema),
            Tool("shrink", "Removes the tool 'late'", EmptySchema),
            Tool("fail", "Reports a tool error", EmptySchema),
            Tool("picture", "Returns text, an image and a resource", EmptySchema),
            Tool("bad_params", "Refuses its parameters at the protocol level", EmptySchema),
            Tool("crash", "Makes the server process exit while it handles the call (stdio only)", EmptySchema),
            Tool(LongToolName, "Has a long name", EmptySchema),
        };
        if (_late)
        {
            tools.Add(Tool("late", "Exists only after grow", EmptySchema));
        }

        tools.AddRange(ExtraTools.Select(name => Tool(name, "An extra tool", EmptySchema)));
        if (HeaderTool)
        {
            tools.Add(Tool("regional", "Has a parameter sent as a header too", RegionalSchema));
        }

        return tools;
    }

    private static Tool Tool(string name, string description, string schema) => new()
    {
        Name = name,
        Description = description,
        InputSchema = JsonDocument.Parse(schema).RootElement.Clone(),
    };

    private async ValueTask<CallToolResult> CallAsync(RequestContext<CallToolRequestParams> context, CancellationToken cancellationToken)
    {
        var name = context.Params!.Name;
        var args = context.Params.Arguments ?? new Dictionary<string, JsonElement>();
        Record($"called {name} {JsonSerializer.Serialize(args)}");
        switch (name)
        {
            case "echo":
                return Text($"Echo: {args["message"].GetString()}");
            case "add":
                return Text((args["a"].GetDouble() + args["b"].GetDouble()).ToString(CultureInfo.InvariantCulture));
            case "lookup":
                return Text($"looked up {args["id"].GetRawText()}");
            case "pid":
                return Text(Environment.ProcessId.ToString(CultureInfo.InvariantCulture));
            case "wait":
                Record("started wait");
                try
                {
                    await Task.Delay(Timeout.Infinite, cancellationToken).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    Record("cancelled wait");
                    throw;
                }

                return Text("never");
            case "grow" or "shrink":
                _late = name == "grow";
                await context.Server.SendNotificationAsync(NotificationMethods.ToolListChangedNotification, cancellationToken).ConfigureAwait(false);
                return Text(name == "grow" ? "grown" : "shrunk");
            case "late" when _late:
                return Text("late tool here");
            case "fail":
                return new CallToolResult
                {
                    IsError = true,
                    Content = [new TextContentBlock { Text = "the widget is broken" }, ImageContentBlock.FromBytes(Png, "image/png")],
                };
            case "picture":
                return new CallToolResult
                {
                    Content =
                    [
                        new TextContentBlock { Text = "a red dot" },
                        ImageContentBlock.FromBytes(Png, "image/png"),
                        new EmbeddedResourceBlock { Resource = new TextResourceContents { Uri = "memo://1", MimeType = "text/plain", Text = "memo text" } },
                        new EmbeddedResourceBlock { Resource = BlobResourceContents.FromBytes(Pdf, "file:///report.pdf", "application/pdf") },
                        new EmbeddedResourceBlock { Resource = BlobResourceContents.FromBytes(Gif, "file:///dot.gif", "image/gif") },
                        new EmbeddedResourceBlock { Resource = BlobResourceContents.FromBytes(new byte[] { 0x50, 0x4B, 3, 4 }, "file:///data.zip", "application/zip") },
                        ImageContentBlock.FromBytes("<svg/>"u8.ToArray(), "image/svg+xml"),
                        AudioContentBlock.FromBytes(new byte[] { 1, 2, 3 }, "audio/wav"),
                        new ResourceLinkBlock { Name = "manual", Uri = "https://example.com/manual" },
                    ],
                };
            case "bad_params":
                throw new McpProtocolException("parameter 'x' is missing", McpErrorCode.InvalidParams);
            case "crash" when _eventsFile is not null:
                // Only the stdio server (a process of its own) has an events file: an in-process HTTP server must not exit.
                Environment.Exit(3);
                return Text("never");
            case "regional" when HeaderTool:
                return Text($"region {args["region"].GetString()}");
            case var extra when ExtraTools.Contains(extra):
                return Text($"{extra} called");
            default:
                throw new McpProtocolException($"Unknown tool: '{name}'", McpErrorCode.InvalidParams);
        }
    }

    /// <summary>A PNG signature and header: enough for the bytes to be a PNG (what Claude checks against the media type).</summary>
    public static readonly byte[] Png = [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0, 0, 0, 0x0D, 0x49, 0x48, 0x44, 0x52];

    /// <summary>A GIF signature.</summary>
    public static readonly byte[] Gif = "GIF89a\u0001\u0000\u0001\u0000"u8.ToArray();

    /// <summary>The start of a PDF.</summary>
    public static readonly byte[] Pdf = "%PDF-1.4\n%%EOF\n"u8.ToArray();

    private static CallToolResult Text(string text) => new() { Content = [new TextContentBlock { Text = text }] };

    private void Record(string what)
    {
        Events.Enqueue(what);
        if (_eventsFile is not null)
        {
            lock (Events)
            {
                File.AppendAllText(_eventsFile, what + "\n");
            }
        }
    }
}
