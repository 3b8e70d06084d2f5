using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AgentPg.Soak;

/// <summary>The worker process of the soak: one started client with the soak's tools, until SIGTERM.</summary>
internal static class SoakWorker
{
    public static async Task<int> RunAsync(string connectionString, string claudeUrl, string apiKey, string instanceId)
    {
        using var loggerFactory = LoggerFactory.Create(logging => logging
            .AddSimpleConsole(o =>
            {
                o.SingleLine = true;
                o.TimestampFormat = "HH:mm:ss.fff ";
            })
            .SetMinimumLevel(LogLevel.Warning));
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        var options = new AgentPgOptions
        {
            ApiKey = apiKey,
            BaseUrl = claudeUrl,
            InstanceId = instanceId,
            LoggerFactory = loggerFactory,
        };
        SoakTimings.Apply(options);
        await using var client = AgentPgClient.Create(dataSource, options);
        client.RegisterTool(new EffectTool(dataSource, instanceId));
        client.RegisterTool(new EchoTool(dataSource, instanceId));

        using var stopping = new CancellationTokenSource();
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, context =>
        {
            context.Cancel = true;
            stopping.Cancel();
        });

        await client.StartAsync();
        Console.WriteLine($"READY {client.InstanceId}");
        try
        {
            await Task.Delay(Timeout.Infinite, stopping.Token);
        }
        catch (OperationCanceledException)
        {
        }

        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(15)))
        {
            await client.StopAsync(deadline.Token);
        }

        Console.WriteLine($"STOPPED {client.InstanceId}");
        return 0;
    }
}
