namespace AgentPg.Soak;

/// <summary>Injects one fault at a time, at random intervals: kill -9 of a worker (a new one takes its slot a moment
/// later), a freeze (SIGSTOP for longer than the instance TTL, then SIGCONT), or a PostgreSQL restart.</summary>
internal sealed class Chaos(WorkerPool workers, PostgresControl postgres, SoakSettings settings, SoakLog log)
{
    private readonly Random _random = new(settings.Seed + 1);

    public int Kills { get; private set; }

    public int Freezes { get; private set; }

    public int PostgresRestarts { get; private set; }

    public int Failures { get; private set; }

    public async Task RunAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromMilliseconds(_random.Next(settings.MinFaultIntervalMs, settings.MaxFaultIntervalMs)), stop);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            // A fault, once started, runs to its end (a frozen worker is always thawed, a killed one replaced).
            try
            {
                var pick = _random.NextDouble();
                if (pick < 0.4)
                {
                    await KillAsync();
                }
                else if (pick < 0.7)
                {
                    await FreezeAsync();
                }
                else
                {
                    await RestartPostgresAsync();
                }
            }
            catch (Exception ex)
            {
                Failures++;
                log.Info($"fault injection failed: {ex.GetType().Name}: {ex.Message}");
            }
        }
    }

    private async Task KillAsync()
    {
        var slot = _random.Next(workers.Count);
        var victim = workers[slot]!;
        await victim.KillAsync();
        Kills++;
        log.Fault($"kill -9 {victim.InstanceId}");
        await Task.Delay(TimeSpan.FromMilliseconds(_random.Next(500, 3000)));
        await victim.DisposeAsync();
        await workers.StartAsync(slot, CancellationToken.None);
    }

    private async Task FreezeAsync()
    {
        var victim = workers[_random.Next(workers.Count)]!;
        var frozenFor = SoakTimings.InstanceTtl + TimeSpan.FromMilliseconds(_random.Next(500, 3000));
        victim.Freeze();
        Freezes++;
        log.Fault($"SIGSTOP {victim.InstanceId} for {frozenFor.TotalSeconds:0.0} s");
        await Task.Delay(frozenFor);
        victim.Thaw();
        log.Info($"SIGCONT {victim.InstanceId}");
    }

    private async Task RestartPostgresAsync()
    {
        log.Fault("pg_ctl restart -m fast");
        await postgres.RestartAsync();
        PostgresRestarts++;
        log.Info("PostgreSQL is back");
    }
}
