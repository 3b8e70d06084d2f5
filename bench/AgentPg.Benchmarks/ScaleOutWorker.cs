using System.Globalization;
using Npgsql;

namespace AgentPg.Benchmarks;

/// <summary>The worker process of the scale-out phase: one started client on the benchmark schema, stopped when the parent
/// writes <c>STOP</c> to its standard input (or closes it).</summary>
internal static class ScaleOutWorker
{
    public const string Usage = "usage: AgentPg.Benchmarks worker INSTANCE_ID CLAUDE_URL API_KEY SLOTS";

    public static async Task<int> RunAsync(string[] args)
    {
        var connectionString = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION");
        if (args.Length != 4 || string.IsNullOrEmpty(connectionString)
            || !int.TryParse(args[3], NumberStyles.None, CultureInfo.InvariantCulture, out var slots) || slots <= 0)
        {
            Console.Error.WriteLine(Usage + " (and AGENTPG_CONNECTION set)");
            return 2;
        }

        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        await using var client = AgentPgClient.Create(dataSource, new AgentPgOptions
        {
            Schema = BenchEnvironment.Schema,
            ApiKey = args[2],
            BaseUrl = args[1],
            InstanceId = args[0],
            MaxConcurrentStreamingRuns = slots,
        });
        await client.StartAsync();
        Console.WriteLine("READY " + args[0]);
        while (await Console.In.ReadLineAsync() is { } line && line != "STOP")
        {
        }

        using (var deadline = new CancellationTokenSource(TimeSpan.FromSeconds(30)))
        {
            await client.StopAsync(deadline.Token);
        }

        Console.WriteLine("STOPPED " + args[0]);
        return 0;
    }
}
