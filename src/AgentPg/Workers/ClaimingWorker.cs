using AgentPg.Diagnostics;
using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Workers;

/// <summary>The claim loop shared by the run and tool workers.</summary>
/// <remarks>
/// <see cref="MaxInFlight"/> bounds the work in progress, not the claim size: each claim takes as many items as there
/// are free slots, each item runs in its own task, and a finished item frees its slot and wakes the loop. The loop also
/// wakes on its <see cref="WakeSignal"/> (NOTIFY, local events) and on <see cref="PollInterval"/> as a fallback.
/// Stopping is two-phase: <c>stopClaiming</c> ends the loop; in-flight items run until <c>hardStop</c> fires.
/// </remarks>
internal abstract class ClaimingWorker<T>(Engine engine, WakeSignal wake, int maxInFlight, TimeSpan pollInterval) : IDisposable
{
    private readonly SemaphoreSlim _slots = new(maxInFlight, maxInFlight);

    // Whether claimable work may be left behind: the last claim filled every free slot, or the loop woke while none was free.
    // A finishing item wakes the loop only then, so idle instances do not claim after every item.
    private bool _mayHaveMore = true;
    private readonly HashSet<Task> _inFlight = [];
    private Task? _loop;

    protected Engine Engine => engine;

    protected int MaxInFlight => maxInFlight;

    protected TimeSpan PollInterval => pollInterval;

    protected abstract string Name { get; }

    public void Start(StopTokens stop, CancellationToken stopClaiming)
        => _loop = Internal.Background.Run(() => LoopAsync(stop, stopClaiming));

    /// <summary>Waits for the claim loop to end (after stopClaiming) and for in-flight items to finish.</summary>
    public async Task DrainAsync()
    {
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }

        Task[] remaining;
        lock (_inFlight)
        {
            remaining = [.. _inFlight];
        }

        await Task.WhenAll(remaining).ConfigureAwait(false);
    }

    // The slots are not disposed: an item that ignored the hard stop may still finish (and release its slot) after
    // StopAsync returned. SemaphoreSlim holds no unmanaged resource unless its AvailableWaitHandle is used.
    public void Dispose()
    {
    }

    /// <summary>Adds the claim of up to <paramref name="count"/> items to the claim's batch.</summary>
    protected abstract void AddClaim(NpgsqlBatch batch, int count);

    /// <summary>Reads a claimed item from a row of the claim.</summary>
    protected abstract T ReadClaimed(NpgsqlDataReader reader);

    /// <summary>Reads what <see cref="AddClaim"/> added after the claim itself, the reader past the claim's rows; called only
    /// when something was claimed.</summary>
    protected virtual Task ReadAfterClaimAsync(NpgsqlDataReader reader, List<T> claimed, CancellationToken cancellationToken) => Task.CompletedTask;

    protected abstract Task ProcessAsync(T item, StopTokens stop);

    /// <summary>The id under which the item's claim is stored (a run's or a tool execution's).</summary>
    protected abstract Guid KeyOf(T item);

    /// <summary>Periodic extra work of the loop (for example scans); called at most once per poll.</summary>
    protected virtual Task OnPollAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    private async Task LoopAsync(StopTokens stop, CancellationToken stopClaiming)
    {
        var errorDelay = TimeSpan.FromMilliseconds(100);
        while (!stopClaiming.IsCancellationRequested)
        {
            var saturated = false;
            try
            {
                // Set before the slots are read: an item finishing from here on wakes the loop again (see RunItemAsync).
                Volatile.Write(ref _mayHaveMore, true);
                var free = _slots.CurrentCount;
                if (free > 0)
                {
                    List<T> items;
                    // In flight until what it claimed is held: a heartbeat meanwhile could miss it (see HeldWork).
                    engine.Held.BeginClaim();
                    try
                    {
                        items = await ClaimAsync(free, stopClaiming).ConfigureAwait(false);
                        foreach (var item in items)
                        {
                            // Reported by the heartbeat from now until the item is done.
                            engine.Held.Add(KeyOf(item));
                        }
                    }
                    finally
                    {
                        engine.Held.EndClaim();
                    }

                    foreach (var item in items)
                    {
                        await _slots.WaitAsync(CancellationToken.None).ConfigureAwait(false);
                        Track(RunItemAsync(item, stop));
                    }

                    saturated = items.Count == free;
                    if (!saturated)
                    {
                        // Everything claimable was taken; work that arrives later comes with its own wake-up.
                        Volatile.Write(ref _mayHaveMore, false);
                    }
                }

                await OnPollAsync(stopClaiming).ConfigureAwait(false);
                errorDelay = TimeSpan.FromMilliseconds(100);
            }
            catch (OperationCanceledException) when (stopClaiming.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex)
            {
                // Usually the database is unreachable: back off, keep going.
                Log.WorkerLoopFailed(engine.Logger, ex, Name);
                engine.Hooks.Error(ex);
                saturated = false;
                try
                {
                    await Task.Delay(errorDelay, engine.Time, stopClaiming).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }

                errorDelay = TimeSpan.FromTicks(Math.Min(errorDelay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
                continue;
            }

            if (saturated && _slots.CurrentCount > 0)
            {
                // More work is likely waiting and a slot is already free again.
                continue;
            }

            try
            {
                await wake.WaitAsync(pollInterval, engine.Time, stopClaiming).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    /// <summary>One claim of up to <paramref name="count"/> items, with what <see cref="AddClaim"/> reads after it.</summary>
    internal async Task<List<T>> ClaimAsync(int count, CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            // A claim lost in a server crash is harmless: the item is pending again and every later write is fenced.
            NotifySql.AddAsyncCommit(batch);
            AddClaim(batch, count);
            var reader = await engine.ExecuteReaderAsync(batch, cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                var claimed = new List<T>();
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    claimed.Add(ReadClaimed(reader));
                }

                if (claimed.Count > 0)
                {
                    await ReadAfterClaimAsync(reader, claimed, cancellationToken).ConfigureAwait(false);
                }

                return claimed;
            }
        }
    }

    private async Task RunItemAsync(T item, StopTokens stop)
    {
        // Run the item off the loop's thread so a slow synchronous part cannot stall claiming.
        await Task.Yield();
        try
        {
            await ProcessAsync(item, stop).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.WorkerItemFailed(engine.Logger, ex, Name);
        }
        finally
        {
            engine.Held.Remove(KeyOf(item));
            _slots.Release();
            if (Volatile.Read(ref _mayHaveMore))
            {
                // The last claim filled every slot, or a wake-up came while none was free: look again now.
                wake.Set();
            }
        }
    }

    private void Track(Task task)
    {
        lock (_inFlight)
        {
            _inFlight.Add(task);
        }

        task.ContinueWith(
            t =>
            {
                lock (_inFlight)
                {
                    _inFlight.Remove(t);
                }
            },
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }
}

/// <summary>Claims pending runs of one mode that this instance can serve (it registered every tool their agent lists).</summary>
internal abstract class RunWorker(Engine engine, RunMode mode, WakeSignal wake, int maxInFlight)
    : ClaimingWorker<ClaimedRun>(engine, wake, maxInFlight, engine.Options.RunPollInterval)
{
    protected override Guid KeyOf(ClaimedRun item) => item.Run.Id;

    // The claim starts each run's first iteration (agentpg_claim_runs); the same batch reads what those iterations' requests
    // are built from (agents, delegates, conversations), so a run's first iteration needs no round trip of its own.
    protected override void AddClaim(NpgsqlBatch batch, int count)
    {
        Engine.Sql.Runs.AddClaim(batch, Engine.InstanceId, count, mode);
        MessageSql.AddIndexPlans(batch);
        Engine.Sql.Agents.AddForClaimed(batch);
        Engine.Sql.Messages.AddContextsForClaimed(batch);
    }

    protected override ClaimedRun ReadClaimed(NpgsqlDataReader reader) => RunSql.ReadClaimed(reader);

    protected override async Task ReadAfterClaimAsync(NpgsqlDataReader reader, List<ClaimedRun> claimed, CancellationToken cancellationToken)
    {
        await reader.NextResultAsync(cancellationToken).ConfigureAwait(false); // past the planner setting
        await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
        var (agents, delegates) = await AgentSql.ReadForClaimedAsync(reader, cancellationToken).ConfigureAwait(false);
        await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
        var contexts = await MessageSql.ReadContextsForClaimedAsync(reader, cancellationToken).ConfigureAwait(false);
        foreach (var run in claimed)
        {
            // A run whose agent is gone is left to the iteration start, which fails it with the reason.
            if (agents.TryGetValue(run.Run.AgentId, out var agent))
            {
                run.FirstIterationInputs = new IterationInputs(
                    agent, delegates.GetValueOrDefault(run.Run.AgentId) ?? [], contexts.GetValueOrDefault(run.Run.Id) ?? []);
            }
        }
    }
}

/// <summary>Processes each claimed streaming run in its own task, <see cref="AgentPgOptions.MaxConcurrentStreamingRuns"/> at a time.</summary>
internal sealed class StreamingRunWorker(Engine engine)
    : RunWorker(engine, RunMode.Streaming, engine.StreamingWake, engine.Options.MaxConcurrentStreamingRuns)
{
    private readonly RunProcessor _processor = new(engine);

    protected override string Name => "streaming run worker";

    protected override Task ProcessAsync(ClaimedRun item, StopTokens stop) => _processor.ProcessAsync(item, stop);
}
