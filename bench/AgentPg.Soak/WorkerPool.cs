namespace AgentPg.Soak;

/// <summary>The worker processes, one per slot; a killed worker is replaced in its slot by a new process with a new
/// instance id.</summary>
internal sealed class WorkerPool(int size, string logDirectory, Func<string, IEnumerable<string>> arguments, SoakLog log) : IAsyncDisposable
{
    private readonly ChildProcess?[] _slots = new ChildProcess?[size];
    private readonly int[] _generations = new int[size];

    public int Count => size;

    public int StartFailures { get; private set; }

    public ChildProcess? this[int slot] => _slots[slot];

    public async Task StartAsync(int slot, CancellationToken cancellationToken)
    {
        // PostgreSQL may be restarting: a worker that cannot start exits, and the next attempt follows.
        for (var attempt = 1; ; attempt++)
        {
            var id = $"w{slot + 1}-{_generations[slot]++}";
            try
            {
                _slots[slot] = await ChildProcess.StartAsync(id, logDirectory, arguments(id), TimeSpan.FromSeconds(90));
                log.Info($"worker {id} ready");
                return;
            }
            catch (Exception ex) when (ex is InvalidOperationException or TimeoutException && attempt < 20)
            {
                StartFailures++;
                log.Info($"worker {id} did not start ({ex.Message}); trying again");
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            }
        }
    }

    public async Task StopAllAsync()
    {
        await Task.WhenAll(_slots.Where(w => w is not null).Select(w => w!.StopAsync(TimeSpan.FromSeconds(30))));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var w in _slots)
        {
            if (w is not null)
            {
                await w.DisposeAsync();
            }
        }
    }
}
