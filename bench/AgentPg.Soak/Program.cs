using System.Globalization;
using AgentPg;
using AgentPg.Soak;
using AgentPg.Testing;
using Npgsql;

// AgentPg chaos soak (./build.sh soak --minutes N): worker processes under a mixed load while a chaos loop kills,
// freezes and cuts them off from PostgreSQL; afterwards the database must show nothing lost, stuck, duplicated or run
// after its cancel. See bench/README.md.
CultureInfo.DefaultThreadCurrentCulture = CultureInfo.InvariantCulture;
CultureInfo.CurrentCulture = CultureInfo.InvariantCulture;

if (args.Length > 0 && args[0] == "worker")
{
    // worker <connection> <claude url> <api key> <instance id>
    return await SoakWorker.RunAsync(args[1], args[2], args[3], args[4]);
}

SoakSettings settings;
try
{
    settings = SoakSettings.Parse(args);
}
catch (Exception ex) when (ex is ArgumentException or FormatException)
{
    Console.Error.WriteLine(ex.Message);
    Console.Error.WriteLine(SoakSettings.Usage);
    return 2;
}

var connectionString = Environment.GetEnvironmentVariable("AGENTPG_CONNECTION");
var postgres = PostgresControl.FromEnvironment();
if (string.IsNullOrEmpty(connectionString) || postgres is null)
{
    Console.Error.WriteLine("AGENTPG_CONNECTION, AGENTPG_PG_BIN and AGENTPG_PG_DATA are not set. Run `./build.sh soak`, which starts a throwaway PostgreSQL it may restart.");
    return 2;
}

var log = new SoakLog();
var connection = new NpgsqlConnectionStringBuilder(connectionString) { Timeout = 5, MaxPoolSize = 60 }.ConnectionString;
await using var dataSource = NpgsqlDataSource.Create(connection);
await new AgentPgMigrator(dataSource).MigrateAsync();
await using (var command = dataSource.CreateCommand(SoakSchema.Create))
{
    await command.ExecuteNonQueryAsync();
}

await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
{
    RecordRequests = false,
    BatchProcessingDelay = TimeSpan.FromSeconds(1),
    Responder = SoakModel.Respond,
});

var producerOptions = new AgentPgOptions();
SoakTimings.Apply(producerOptions);
await using var producerClient = AgentPgClient.Create(dataSource, producerOptions);
var child = await producerClient.CreateAgentAsync(new AgentDefinition
{
    Name = SoakModel.ChildAgent,
    Description = "Records an effect for the parent.",
    Model = "claude-sonnet-4-5",
    Tools = [EffectTool.ToolName],
});
var parent = await producerClient.CreateAgentAsync(new AgentDefinition
{
    Name = "soak_parent",
    Model = "claude-sonnet-4-5",
    Tools = [EffectTool.ToolName, EchoTool.ToolName],
    AgentIds = [child.Id],
});

var logDirectory = Directory.CreateTempSubdirectory("agentpg-soak-").FullName;
log.Info($"soak: {settings.Minutes} min, {settings.Workers} workers, {settings.RunsPerSecond} runs/s, seed {settings.Seed}; worker logs in {logDirectory}");
await using var workers = new WorkerPool(settings.Workers, logDirectory, id => [connection, claude.BaseUrl, claude.ApiKey, id], log);
for (var slot = 0; slot < settings.Workers; slot++)
{
    await workers.StartAsync(slot, CancellationToken.None);
}

var producer = new Producer(producerClient, parent.Id, settings, log);
var chaos = new Chaos(workers, postgres, settings, log);
var loadStarted = TimeProvider.System.GetUtcNow();
using (var stop = new CancellationTokenSource(TimeSpan.FromMinutes(settings.Minutes)))
{
    await Task.WhenAll(producer.RunAsync(stop.Token), chaos.RunAsync(stop.Token));
}

var loadDuration = TimeProvider.System.GetUtcNow() - loadStarted;
log.Info($"load stopped; waiting up to {settings.SettleSeconds} s for every run to end");
var checks = new SoakChecks(dataSource, log);
var settled = await checks.SettleAsync(TimeSpan.FromSeconds(settings.SettleSeconds));
log.Info(settled ? "settled" : "settle deadline passed");
await checks.ReportAsync(producer.Intents, chaos, workers, producer, settings, loadDuration);
await workers.StopAllAsync();
File.Copy(postgres.LogFile, Path.Combine(logDirectory, "postgresql.log"), overwrite: true);
Console.WriteLine($"worker and PostgreSQL logs: {logDirectory}");
return checks.FailedChecks == 0 ? 0 : 1;
