using System.Collections.Concurrent;

namespace AgentPg.Soak;

/// <summary>One run the producer meant to create: its session and idempotency key (known before the first attempt),
/// and the id once a creation call returned.</summary>
internal sealed record Intent(int Number, string Key, string Mode, string Kind)
{
    public Guid SessionId { get; set; }

    public Guid? RunId { get; set; }

    public bool CancelRequested { get; set; }

    public bool CancelAcknowledged { get; set; }
}

/// <summary>Creates runs at a steady rate (streaming and batch, each scenario of <see cref="SoakModel"/>), and cancels
/// some of them after a random delay. Every call is retried through faults, creation with the same session and
/// idempotency key, so a creation whose commit outcome was lost is never made twice.</summary>
internal sealed class Producer(AgentPgClient client, Guid parentAgentId, SoakSettings settings, SoakLog log)
{
    private readonly ConcurrentBag<Intent> _intents = [];
    private readonly ConcurrentDictionary<string, int> _errors = new();
    private readonly List<Task> _inFlight = [];
    private readonly Random _random = new(settings.Seed);
    private int _number;

    public IReadOnlyCollection<Intent> Intents => _intents;

    public IReadOnlyDictionary<string, int> Errors => _errors;

    public async Task RunAsync(CancellationToken stop)
    {
        var interval = TimeSpan.FromSeconds(1 / settings.RunsPerSecond);
        using var timer = new PeriodicTimer(interval);
        try
        {
            while (await timer.WaitForNextTickAsync(stop))
            {
                _inFlight.RemoveAll(t => t.IsCompleted);
                if (_inFlight.Count >= 50)
                {
                    continue;   // the database is down: do not pile up callers
                }

                var n = ++_number;
                var intent = new Intent(n, $"soak-{n}", _random.NextDouble() < settings.BatchFraction ? "batch" : "streaming",
                    SoakModel.Kinds[_random.Next(SoakModel.Kinds.Length)]);
                var cancelAfter = _random.NextDouble() < settings.CancelFraction ? TimeSpan.FromMilliseconds(_random.Next(0, 2000)) : (TimeSpan?)null;
                _intents.Add(intent);
                _inFlight.Add(Task.Run(() => ProduceAsync(intent, cancelAfter), CancellationToken.None));
            }
        }
        catch (OperationCanceledException)
        {
        }

        log.Info($"producer stopped after {_number} runs; waiting for {_inFlight.Count(t => !t.IsCompleted)} calls in flight");
        await Task.WhenAll(_inFlight);
    }

    private async Task ProduceAsync(Intent intent, TimeSpan? cancelAfter)
    {
        try
        {
            await ProduceOnceAsync(intent, cancelAfter);
        }
        catch (Exception ex)
        {
            _errors.AddOrUpdate($"gave up after 2 min: {ex.GetType().Name}: {ex.Message}", 1, (_, c) => c + 1);
        }
    }

    private async Task ProduceOnceAsync(Intent intent, TimeSpan? cancelAfter)
    {
        intent.SessionId = await RetryAsync("new session", () => client.NewSessionAsync());
        var prompt = $"soak {intent.Kind} r{intent.Number}";
        var options = new RunOptions { IdempotencyKey = intent.Key };
        intent.RunId = await RetryAsync("create run", () => intent.Mode == "batch"
            ? client.RunAsync(intent.SessionId, parentAgentId, prompt, options)
            : client.RunFastAsync(intent.SessionId, parentAgentId, prompt, options));
        if (cancelAfter is { } delay)
        {
            await Task.Delay(delay);
            intent.CancelRequested = true;
            await RetryAsync("cancel run", async () =>
            {
                await client.CancelRunAsync(intent.RunId.Value);
                return true;
            });
            intent.CancelAcknowledged = true;
        }
    }

    private async Task<T> RetryAsync<T>(string what, Func<Task<T>> call)
    {
        var deadline = TimeProvider.System.GetUtcNow() + TimeSpan.FromMinutes(2);
        while (true)
        {
            try
            {
                return await call();
            }
            catch (Exception ex) when (TimeProvider.System.GetUtcNow() < deadline)
            {
                _errors.AddOrUpdate($"{what}: {ex.GetType().Name}", 1, (_, c) => c + 1);
                await Task.Delay(TimeSpan.FromMilliseconds(250));
            }
        }
    }
}
