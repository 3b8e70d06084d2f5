using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Internal;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace AgentPg.Mcp;

/// <summary>The connection to one MCP server and the AgentPg tools made of its tools.</summary>
/// <remarks>
/// <para>Created by <see cref="AgentPgMcpExtensions.AddMcpServerAsync"/>. The connection lives as long as the client,
/// started or not: when it is lost (the server process exits, the network fails) the source reconnects with a backoff
/// from 1 second to <see cref="McpServerOptions.MaxReconnectDelay"/>, discovers the tools again and registers them again;
/// tool calls made meanwhile are snoozed. It follows <c>notifications/tools/list_changed</c>: new tools are registered,
/// removed ones unregistered from the instance. <see cref="AgentPgClient.StopAsync"/> closes the connection (a stdio
/// server process exits) and a later <see cref="AgentPgClient.StartAsync"/> opens it again;
/// <see cref="AgentPgClient.DisposeAsync"/> closes it for good.</para>
/// <para>Disposing the source closes the connection and unregisters its tools.</para>
/// </remarks>
public sealed class McpToolSource : IAsyncDisposable, IClientAttachment
{
    private static readonly TimeSpan s_firstReconnectDelay = TimeSpan.FromSeconds(1);

    /// <summary>The most pages of tools/list followed: a server whose cursor never ends must not keep the source listing.</summary>
    private const int MaxToolListPages = 1000;

    private readonly AgentPgClient _client;
    private readonly McpServerOptions _options;
    private readonly ILogger _logger;
    private readonly ILoggerFactory _loggerFactory;
    private readonly TimeProvider _time;
    private readonly SemaphoreSlim _sync = new(1, 1);
    private readonly Lock _gate = new();
    private readonly HttpClient? _http;
    private McpClient? _session;
    private Dictionary<string, McpTool> _tools = new(StringComparer.Ordinal);
    private CancellationTokenSource? _lifetime;
    private Task _monitor = Task.CompletedTask;
    private TimeSpan _reconnectDelay = s_firstReconnectDelay;
    private DateTimeOffset? _unavailableSince; // guarded by _gate: when the connection was lost (or reopened), null while connected
    private long _listChanges;
    private (McpClient Session, HashSet<string> Names)? _known; // guarded by _sync
    private bool _disposed;

    private McpToolSource(AgentPgClient client, McpServerOptions options)
    {
        _client = client;
        _options = options;
        _loggerFactory = client.Options.LoggerFactory ?? NullLoggerFactory.Instance;
        _logger = _loggerFactory.CreateLogger("AgentPg.Mcp");
        _time = client.Options.TimeProvider;
        if (options.Endpoint is not null)
        {
            _http = new HttpClient(new HeaderHandler(options.Headers, options.HeaderProvider) { InnerHandler = new SocketsHttpHandler() })
            {
                Timeout = Timeout.InfiniteTimeSpan,
            };
        }
    }

    /// <summary>Gets the server's name (<see cref="McpServerOptions.Name"/>).</summary>
    public string Name => _options.Name;

    /// <summary>Gets whether the server is connected now.</summary>
    public bool IsConnected => CurrentSession is not null;

    /// <summary>Gets the names (as Claude sees them) of the tools registered from this server, sorted.</summary>
    public IReadOnlyList<string> ToolNames
    {
        get
        {
            lock (_gate)
            {
                return [.. _tools.Keys.Order(StringComparer.Ordinal)];
            }
        }
    }

    /// <summary>Gets the server's name and version as it announced them, or <see langword="null"/> when not connected.</summary>
    public string? ServerInfo => CurrentSession?.ServerInfo is { } info ? $"{info.Name} {info.Version}" : null;

    string IClientAttachment.Name => $"MCP server '{Name}'";

    internal TimeProvider Time => _time;

    internal bool IsDisposed
    {
        get
        {
            lock (_gate)
            {
                return _disposed;
            }
        }
    }

    internal McpClient? CurrentSession
    {
        get
        {
            lock (_gate)
            {
                return _session is { Completion.IsCompleted: false } session ? session : null;
            }
        }
    }

    /// <summary>How long a call made while disconnected waits before it is tried again: about when the next attempt ends.</summary>
    internal TimeSpan RetryAfter
    {
        get
        {
            lock (_gate)
            {
                return _reconnectDelay + TimeSpan.FromSeconds(1);
            }
        }
    }

    /// <summary>The failure for a call that found the server unreachable: a snooze until it reconnects, or, once the server
    /// has been unreachable for <see cref="McpServerOptions.UnavailableTimeout"/>, a cancellation Claude sees.</summary>
    internal Exception Unreachable(string toolName, string reason)
    {
        TimeSpan unavailableFor;
        lock (_gate)
        {
            _unavailableSince ??= _time.GetUtcNow();
            unavailableFor = _time.GetUtcNow() - _unavailableSince.Value;
        }

        var limit = _options.UnavailableTimeout;
        if (limit != Timeout.InfiniteTimeSpan && unavailableFor >= limit)
        {
            return new ToolCancelException(
                $"MCP server '{Name}' has been unreachable for {AgentPg.Internal.Durations.Format(unavailableFor)} ({reason}); tool '{toolName}' is not available now (McpServerOptions.UnavailableTimeout: {AgentPg.Internal.Durations.Format(limit)})");
        }

        return new ToolSnoozeException(RetryAfter, $"MCP server '{Name}' {reason} for tool '{toolName}'; reconnecting");
    }

    /// <summary>Closes the connection and unregisters this server's tools from the client.</summary>
    /// <returns>A task that completes when the connection is closed (a stdio server process has exited).</returns>
    public async ValueTask DisposeAsync()
    {
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
        }

        _client.Detach(this);
        await CloseAsync().ConfigureAwait(false);
        // A resync after tools/list_changed may be registering tools: wait for it (it holds _sync while it registers), so
        // that none stays registered after this; a later one sees _disposed and registers nothing.
        await _sync.WaitAsync().ConfigureAwait(false);
        Dictionary<string, McpTool> tools;
        try
        {
            lock (_gate)
            {
                tools = _tools;
                _tools = new(StringComparer.Ordinal);
            }

            foreach (var tool in tools.Values)
            {
                UnregisterIfOurs(tool);
            }
        }
        finally
        {
            _sync.Release();
        }

        _http?.Dispose();
    }

    internal static async Task<McpToolSource> CreateAsync(AgentPgClient client, McpServerOptions options, CancellationToken cancellationToken)
    {
        // Nothing would ever close a connection (or stop a server process) of a disposed client.
        ObjectDisposedException.ThrowIf(client.IsDisposed, client);
        var source = new McpToolSource(client, options);
        try
        {
            await source.ConnectAndSyncAsync(firstTime: true, cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            source._http?.Dispose();
            throw;
        }

        try
        {
            client.Attach(source);
        }
        catch (ObjectDisposedException)
        {
            // Disposed while connecting: close the connection and unregister the tools.
            await source.DisposeAsync().ConfigureAwait(false);
            throw;
        }

        source.StartMonitor();
        Log.Connected(source._logger, source.Name, source.ToolNames.Count);
        return source;
    }

    /// <summary>A call saw the connection fail: close that session so the monitor reconnects.</summary>
    internal void ConnectionLost(McpClient session)
    {
        lock (_gate)
        {
            if (!ReferenceEquals(_session, session))
            {
                return;
            }

            _session = null;
            _unavailableSince ??= _time.GetUtcNow();
        }

        Log.ConnectionLost(_logger, Name, null);
        _ = DisposeQuietlyAsync(session);
    }

    Task IClientAttachment.ClientStartedAsync()
    {
        lock (_gate)
        {
            if (_disposed || _lifetime is not null)
            {
                return Task.CompletedTask;
            }
        }

        // Reopened after StopAsync: connect in the background; calls snooze until it succeeds.
        StartMonitor();
        return Task.CompletedTask;
    }

    Task IClientAttachment.ClientStoppedAsync() => CloseAsync();

    async ValueTask IClientAttachment.ClientDisposedAsync() => await DisposeAsync().ConfigureAwait(false);

    private void StartMonitor()
    {
        lock (_gate)
        {
            if (_disposed || _lifetime is not null)
            {
                return;
            }

            if (_session is null)
            {
                _unavailableSince ??= _time.GetUtcNow();
            }

            _lifetime = new CancellationTokenSource();
            var token = _lifetime.Token;
            _monitor = global::AgentPg.Internal.Background.Run(() => MonitorAsync(token));
        }
    }

    private async Task CloseAsync()
    {
        CancellationTokenSource? lifetime;
        Task monitor;
        McpClient? session;
        lock (_gate)
        {
            (lifetime, monitor, session) = (_lifetime, _monitor, _session);
            (_lifetime, _session, _unavailableSince) = (null, null, null);
        }

        if (lifetime is not null)
        {
            await lifetime.CancelAsync().ConfigureAwait(false);
            await monitor.ConfigureAwait(false);
            lifetime.Dispose();
        }

        if (session is not null)
        {
            await DisposeQuietlyAsync(session).ConfigureAwait(false);
            Log.Closed(_logger, Name);
        }
    }

    /// <summary>Waits for the session to end and reconnects, with backoff, until the source is closed.</summary>
    private async Task MonitorAsync(CancellationToken lifetime)
    {
        while (!lifetime.IsCancellationRequested)
        {
            McpClient? session;
            lock (_gate)
            {
                session = _session;
            }

            try
            {
                if (session is not null)
                {
                    var details = await session.Completion.WaitAsync(lifetime).ConfigureAwait(false);
                    lock (_gate)
                    {
                        if (ReferenceEquals(_session, session))
                        {
                            _session = null;
                            _unavailableSince ??= _time.GetUtcNow();
                        }
                    }

                    Log.ConnectionLost(_logger, Name, details.Exception);
                    await DisposeQuietlyAsync(session).ConfigureAwait(false);
                    continue;
                }

                TimeSpan delay;
                lock (_gate)
                {
                    delay = _reconnectDelay;
                }

                await Task.Delay(delay, _time, lifetime).ConfigureAwait(false);
                try
                {
                    await ConnectAndSyncAsync(firstTime: false, lifetime).ConfigureAwait(false);
                    lock (_gate)
                    {
                        _reconnectDelay = s_firstReconnectDelay;
                    }

                    Log.Reconnected(_logger, Name, ToolNames.Count);
                }
                catch (Exception ex) when (!lifetime.IsCancellationRequested && ex is not OutOfMemoryException)
                {
                    lock (_gate)
                    {
                        _reconnectDelay = TimeSpan.FromTicks(Math.Min(_reconnectDelay.Ticks * 2, _options.MaxReconnectDelay.Ticks));
                        delay = _reconnectDelay;
                    }

                    Log.ReconnectFailed(_logger, ex, Name, delay.TotalMilliseconds);
                }
            }
            catch (OperationCanceledException) when (lifetime.IsCancellationRequested)
            {
                return;
            }
        }
    }

    private async Task ConnectAndSyncAsync(bool firstTime, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.ConnectTimeout, _time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        long listChanges;
        lock (_gate)
        {
            listChanges = _listChanges;
        }

        McpClient session;
        try
        {
            session = await McpClient.CreateAsync(CreateTransport(), ClientOptions(), _loggerFactory, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"MCP server '{Name}' ({Describe()}) did not complete the MCP handshake within {_options.ConnectTimeout} (McpServerOptions.ConnectTimeout).");
        }
        catch (Exception ex) when (ex is not OperationCanceledException)
        {
            throw ConnectFailure(ex);
        }

        try
        {
            await SyncToolsAsync(session, firstTime, linked.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (timeout.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            await DisposeQuietlyAsync(session).ConfigureAwait(false);
            throw new TimeoutException($"MCP server '{Name}' ({Describe()}) completed the handshake but did not answer tools/list within {_options.ConnectTimeout} (McpServerOptions.ConnectTimeout).");
        }
        catch
        {
            await DisposeQuietlyAsync(session).ConfigureAwait(false);
            throw;
        }

        McpClient? previous;
        bool missedListChange;
        lock (_gate)
        {
            previous = _session;
            _session = session;
            _unavailableSince = null;
            missedListChange = _listChanges != listChanges;
        }

        if (previous is not null)
        {
            await DisposeQuietlyAsync(previous).ConfigureAwait(false);
        }

        if (missedListChange)
        {
            // tools/list_changed arrived while connecting: its resync found no session (or the old one) and did nothing, and
            // the tools listed above may predate the change.
            _ = Task.Run(ResyncAfterListChangedAsync, CancellationToken.None);
        }
    }

    private Exception ConnectFailure(Exception ex)
    {
        if (_options.Command is { } command)
        {
            return new InvalidOperationException(
                $"MCP server '{Name}': could not start or talk to the command '{command}'" +
                $" ({ex.GetType().Name}: {ex.Message}). Check that the command exists on PATH (or give its full path) and starts an MCP server on stdio.", ex);
        }

        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            if (e is HttpRequestException { StatusCode: { } status })
            {
                var hint = status is System.Net.HttpStatusCode.Unauthorized or System.Net.HttpStatusCode.Forbidden
                    ? " Set McpServerOptions.Headers or HeaderProvider to send its credentials."
                    : "";
                return new InvalidOperationException(
                    $"MCP server '{Name}' at {SafeEndpoint} answered HTTP {(int)status} ({status}).{hint}", ex);
            }
        }

        return new InvalidOperationException($"MCP server '{Name}' at {SafeEndpoint} could not be reached: {ex.Message}", ex);
    }

    private string Describe() => _options.Command is { } command ? $"command '{command}'" : $"endpoint {SafeEndpoint}";

    /// <summary>The endpoint for messages and logs: without user info and query, where credentials are often put. (The
    /// command's arguments are never shown, for the same reason: a connection string with a password, a token.)</summary>
    private string SafeEndpoint => _options.Endpoint!.GetComponents(UriComponents.SchemeAndServer | UriComponents.Path, UriFormat.UriEscaped);

    private IClientTransport CreateTransport()
    {
        if (_options.Command is { } command)
        {
            return new StdioClientTransport(new StdioClientTransportOptions
            {
                Name = Name,
                Command = command,
                Arguments = [.. _options.Arguments],
                EnvironmentVariables = new Dictionary<string, string?>(_options.Environment, StringComparer.Ordinal),
                WorkingDirectory = _options.WorkingDirectory,
                StandardErrorLines = line => Log.ServerStandardError(_logger, Name, line),
            }, _loggerFactory);
        }

        return new HttpClientTransport(new HttpClientTransportOptions
        {
            Name = Name,
            Endpoint = _options.Endpoint!,
            TransportMode = HttpTransportMode.StreamableHttp,
        }, _http!, _loggerFactory, ownsHttpClient: false);
    }

    private McpClientOptions ClientOptions() => new()
    {
        ClientInfo = new Implementation { Name = "agentpg", Version = typeof(McpToolSource).Assembly.GetName().Version?.ToString() ?? "0.0.0" },
        Handlers = new McpClientHandlers
        {
            NotificationHandlers =
            [
                new(NotificationMethods.ToolListChangedNotification, (_, _) =>
                {
                    lock (_gate)
                    {
                        _listChanges++;
                    }

                    // Not on the session's read loop: listing the tools needs that loop.
                    _ = Task.Run(ResyncAfterListChangedAsync, CancellationToken.None);
                    return ValueTask.CompletedTask;
                }),
            ],
        },
    };

    private async Task ResyncAfterListChangedAsync()
    {
        if (CurrentSession is not { } session)
        {
            return;
        }

        try
        {
            await SyncToolsAsync(session, firstTime: false, CancellationToken.None).ConfigureAwait(false);
            Log.ToolsChanged(_logger, Name, ToolNames.Count);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The connection probably went away; the reconnect discovers the tools again.
            Log.ToolListFailed(_logger, ex, Name);
        }
    }

    /// <summary>Lists the server's tools and brings the client's registrations in line: new and changed tools registered,
    /// removed ones unregistered.</summary>
    private async Task SyncToolsAsync(McpClient session, bool firstTime, CancellationToken cancellationToken)
    {
        await _sync.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var discovered = new Dictionary<string, McpTool>(StringComparer.Ordinal);
            var problems = new List<string>();
            var listed = await ListToolsAsync(session, problems, cancellationToken).ConfigureAwait(false);
            var candidates = listed
                .Select(t => (Tool: t, Name: _options.ToolNameFor(t.Name)))
                .ToList();
            // Two of the server's tools whose names map to the same name (files.read and files_read): a name that needed no
            // mapping keeps it, the others take the mapped name with the hash of their own name at the end, whatever order
            // the server lists them in. Only a name that still clashes after that (never in practice) is refused.
            bool Unmapped(Tool tool, string name) => name == (_options.DisableToolPrefix ? tool.Name : $"{Name}__{tool.Name}");
            var mappedTo = candidates.GroupBy(c => c.Name, StringComparer.Ordinal).Where(g => g.Count() > 1)
                .Select(g => g.Key).ToHashSet(StringComparer.Ordinal);
            candidates = [.. candidates.Select(c => mappedTo.Contains(c.Name) && !Unmapped(c.Tool, c.Name)
                ? (c.Tool, _options.DisambiguatedToolNameFor(c.Tool.Name))
                : c)];
            var clashing = candidates.GroupBy(c => c.Name, StringComparer.Ordinal).Where(g => g.Count() > 1)
                .ToDictionary(g => g.Key, g => g.Select(c => c.Tool.Name).Order(StringComparer.Ordinal).ToList(), StringComparer.Ordinal);
            foreach (var (tool, name) in candidates)
            {
                if (clashing.TryGetValue(name, out var sharing) && !Unmapped(tool, name))
                {
                    problems.Add($"tool '{tool.Name}' (as '{name}'): the server's tools {string.Join(", ", sharing.Select(n => $"'{n}'"))} all map to that name");
                    continue;
                }

                if (_client.GetTool(name) is McpTool { Source: var owner } && !ReferenceEquals(owner, this) && !owner.IsDisposed)
                {
                    // Replacing it would leave two connected sources fighting over the name (each reconnection takes it back)
                    // and disposing either would unregister it from both.
                    problems.Add($"tool '{tool.Name}' (as '{name}'): MCP server '{owner.Name}'{(owner.Name == Name ? " (another source)" : "")} already registered a tool of that name");
                    continue;
                }

                try
                {
                    var agentTool = new McpTool(this, tool, name);
                    AgentPgClient.ValidateTool(agentTool);
                    discovered[name] = agentTool;
                }
                catch (ArgumentException ex)
                {
                    problems.Add($"tool '{tool.Name}' (as '{name}'): {ex.Message}");
                }
            }

            if (problems.Count > 0)
            {
                var message = $"MCP server '{Name}' offers tools AgentPg cannot register: {string.Join("; ", problems)}. " +
                              "Exclude them with McpServerOptions.ToolFilter, " +
                              "or give each server its own Name when two offer the same tool.";
                if (firstTime)
                {
                    throw new InvalidOperationException(message);
                }

                Log.ToolsSkipped(_logger, Name, message);
            }

            Dictionary<string, McpTool> previous;
            lock (_gate)
            {
                if (_disposed)
                {
                    return;
                }

                previous = _tools;
                _tools = discovered;
            }

            foreach (var tool in discovered.Values)
            {
                _client.RegisterTool(tool);
            }

            foreach (var (name, tool) in previous)
            {
                if (!discovered.ContainsKey(name))
                {
                    UnregisterIfOurs(tool);
                }
            }
        }
        finally
        {
            _sync.Release();
        }
    }

    /// <summary>Lists the server's tools (every page) that <see cref="McpServerOptions.ToolFilter"/> keeps, reading each tool
    /// on its own: one the SDK refuses (an <c>inputSchema</c> that is not an object schema, an invalid <c>outputSchema</c>) is a
    /// problem naming it, instead of an error about the whole list that no filter can avoid. An <c>inputSchema</c> without
    /// <c>type</c> gets <c>"type": "object"</c>, which MCP requires and Claude too.</summary>
    private async Task<List<Tool>> ListToolsAsync(McpClient session, List<string> problems, CancellationToken cancellationToken)
    {
        var tools = new List<Tool>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await session.SendRequestAsync<ListToolsRequestParams, JsonElement>(RequestMethods.ToolsList,
                new ListToolsRequestParams { Cursor = cursor }, McpJsonUtilities.DefaultOptions, cancellationToken: cancellationToken).ConfigureAwait(false);
            if (page.ValueKind != JsonValueKind.Object || !page.TryGetProperty("tools", out var listed) || listed.ValueKind != JsonValueKind.Array)
            {
                throw new InvalidOperationException($"MCP server '{Name}' answered tools/list without a list of tools.");
            }

            foreach (var element in listed.EnumerateArray())
            {
                var name = element.ValueKind == JsonValueKind.Object && element.TryGetProperty("name", out var n) && n.ValueKind == JsonValueKind.String
                    ? n.GetString()!
                    : null;
                if (name is null)
                {
                    problems.Add("a tool without a name");
                    continue;
                }

                if (_options.ToolFilter is { } filter && !filter(name))
                {
                    continue;
                }

                try
                {
                    var node = JsonNode.Parse(element.GetRawText())!.AsObject();
                    if (node["inputSchema"] is JsonObject schema && !schema.ContainsKey("type"))
                    {
                        schema["type"] = "object";
                    }

                    var tool = node.Deserialize((System.Text.Json.Serialization.Metadata.JsonTypeInfo<Tool>)McpJsonUtilities.DefaultOptions.GetTypeInfo(typeof(Tool)))
                        ?? throw new JsonException("the tool is null");
                    // The SDK's tool cache, which ListToolsAsync would fill: calls of the tool send the Mcp-Param-* headers its
                    // x-mcp-header annotations ask for (an invalid annotation throws, as ListToolsAsync rejects the tool).
                    session.AddKnownTools([tool]);
                    tools.Add(tool);
                }
                catch (Exception ex) when (ex is ArgumentException or JsonException or InvalidOperationException)
                {
                    problems.Add($"tool '{name}': {ex.Message}");
                }
            }

            cursor = page.TryGetProperty("nextCursor", out var next) && next.ValueKind == JsonValueKind.String ? next.GetString() : null;
            if (++pages > MaxToolListPages && cursor is not null)
            {
                throw new InvalidOperationException($"MCP server '{Name}' answered tools/list with more than {MaxToolListPages} pages (a cursor that never ends).");
            }
        }
        while (cursor is not null);

        var names = tools.Select(t => t.Name).ToHashSet(StringComparer.Ordinal);
        if (_known is { } known && ReferenceEquals(known.Session, session))
        {
            session.RemoveKnownTools(known.Names.Where(n => !names.Contains(n)));
        }

        _known = (session, names);
        return tools;
    }

    private void UnregisterIfOurs(McpTool tool)
    {
        // Another registration under the same name (another source, or the application) is left alone.
        if (ReferenceEquals(_client.GetTool(tool.Name), tool))
        {
            _client.UnregisterTool(tool.Name);
        }
    }

    private async Task DisposeQuietlyAsync(McpClient session)
    {
        try
        {
            await session.DisposeAsync().ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            Log.CloseFailed(_logger, ex, Name);
        }
    }
}
