using AgentPg.Mcp;

namespace AgentPg;

/// <summary>Adds MCP servers' tools to an <see cref="AgentPgClient"/>.</summary>
public static class AgentPgMcpExtensions
{
    /// <summary>Connects to an MCP server and registers each of its tools on the client as <c>{Name}__{tool}</c> (mapped to
    /// Claude's tool-name rule when needed: see <see cref="McpServerOptions.ToolNameFor"/>).</summary>
    /// <param name="client">The client (started or not).</param>
    /// <param name="options">The server; the source keeps a validated copy.</param>
    /// <param name="cancellationToken">Cancels connecting.</param>
    /// <returns>The source: its connection lives as long as the client (see <see cref="McpToolSource"/>).</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names each problem and how to fix it.</exception>
    /// <exception cref="InvalidOperationException">The server could not be started or reached (the message names the command
    /// or endpoint, and the HTTP status when there is one), or it offers a tool whose schema AgentPg cannot register, whose
    /// name another connected MCP source already registered.</exception>
    /// <exception cref="TimeoutException">The server did not complete the handshake, or did not list its tools, within
    /// <see cref="McpServerOptions.ConnectTimeout"/>.</exception>
    /// <exception cref="ObjectDisposedException">The client is disposed (the server is not started, or, when the client was
    /// disposed while connecting, its connection is closed again).</exception>
    public static async Task<McpToolSource> AddMcpServerAsync(this AgentPgClient client, McpServerOptions options, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        ArgumentNullException.ThrowIfNull(options);
        return await McpToolSource.CreateAsync(client, options.ValidatedCopy(nameof(options)), cancellationToken).ConfigureAwait(false);
    }
}
