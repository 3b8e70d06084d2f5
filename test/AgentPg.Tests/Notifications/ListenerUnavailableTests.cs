using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using AgentPg.Notifications;
using AgentPg.Storage;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AgentPg.Tests.Notifications;

/// <summary>Review D21: when LISTEN cannot be established, waits do not stall on it again and again.</summary>
public sealed class ListenerUnavailableTests
{
    [Fact]
    public async Task StartAsync_WhenListenCannotBeEstablished_WaitsOnlyForTheFirstAttempt()
    {
        // A port nobody listens on: every connection attempt is refused.
        int port;
        using (var probe = new TcpListener(IPAddress.Loopback, 0))
        {
            probe.Start();
            port = ((IPEndPoint)probe.LocalEndpoint).Port;
        }

        await using var dataSource = NpgsqlDataSource.Create($"Host=127.0.0.1;Port={port};Username=nobody;Timeout=2");
        await using var listener = new NotificationListener(dataSource, new SchemaName("public"), "test", TimeProvider.System, NullLogger.Instance);

        var clock = Stopwatch.StartNew();
        for (var i = 0; i < 10; i++)
        {
            await listener.StartAsync(TimeSpan.FromSeconds(5), CancellationToken.None);
        }

        // Each call waited up to 5 s for a LISTEN that never came: 10 calls took 50 s.
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(5), $"10 StartAsync calls took {clock.Elapsed.TotalSeconds:0.0} s");
        Assert.False(listener.HasListened);
    }
}
