using AgentPg;
using AgentPg.Mcp;
using Microsoft.Extensions.Hosting;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Adds MCP servers' tools to an AgentPg registration.</summary>
public static class AgentPgMcpBuilderExtensions
{
    /// <summary>Connects to an MCP server when the host starts — before the worker starts — and registers its tools on
    /// the client (see <see cref="AgentPgMcpExtensions.AddMcpServerAsync"/>).</summary>
    /// <param name="builder">The AgentPg builder.</param>
    /// <param name="options">The server; validated now, and copied.</param>
    /// <returns>The builder.</returns>
    /// <remarks>A server that cannot be reached fails the host's start with the error of
    /// <see cref="AgentPgMcpExtensions.AddMcpServerAsync"/>. The connection closes when the client stops or is disposed
    /// with the container.</remarks>
    /// <exception cref="ArgumentException">An option is invalid; the message names each problem and how to fix it.</exception>
    public static IAgentPgBuilder AddMcpServer(this IAgentPgBuilder builder, McpServerOptions options)
    {
        ArgumentNullException.ThrowIfNull(builder);
        ArgumentNullException.ThrowIfNull(options);
        var copy = options.ValidatedCopy(nameof(options));
        builder.Services.AddSingleton<IHostedService>(services => new McpServerHostedService(services.GetRequiredService<AgentPgClient>(), copy));
        return builder;
    }

    /// <summary>Connects in <see cref="IHostedLifecycleService.StartingAsync"/>, which every hosted service runs before any
    /// <see cref="IHostedService.StartAsync"/>: the worker starts with the server's tools already registered.</summary>
    private sealed class McpServerHostedService(AgentPgClient client, McpServerOptions options) : IHostedLifecycleService
    {
        private McpToolSource? _source;

        public async Task StartingAsync(CancellationToken cancellationToken)
            => _source ??= await client.AddMcpServerAsync(options, cancellationToken).ConfigureAwait(false);

        public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
