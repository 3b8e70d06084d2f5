namespace AgentPg.Internal;

/// <summary>Something whose lifetime follows a client's (an add-on's connection, such as an MCP server's).</summary>
/// <remarks>Called by <see cref="AgentPgClient"/> after it started, after it stopped and when it is disposed; an exception
/// is logged, never propagated. Implementations must return quickly (start background work rather than wait for it).</remarks>
internal interface IClientAttachment
{
    /// <summary>Gets a name for logs.</summary>
    string Name { get; }

    /// <summary>The client started (<see cref="AgentPgClient.StartAsync"/> completed).</summary>
    Task ClientStartedAsync();

    /// <summary>The client stopped (<see cref="AgentPgClient.StopAsync"/>, also when called by DisposeAsync).</summary>
    Task ClientStoppedAsync();

    /// <summary>The client is being disposed, after it stopped.</summary>
    ValueTask ClientDisposedAsync();
}
