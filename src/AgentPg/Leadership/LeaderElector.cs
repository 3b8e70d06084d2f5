using AgentPg.Diagnostics;
using AgentPg.Runs;
using Npgsql;

namespace AgentPg.Leadership;

/// <summary>Holds the leader lease (agentpg_leader) when it can: tries to acquire it every LeaderTtl/2 and refreshes it at
/// the same pace while leading. It only elects: what a leader does is up to <paramref name="leadershipChanged"/>, called with
/// <see langword="true"/> when this instance becomes the leader and <see langword="false"/> when it stops being one.</summary>
/// <remarks>
/// At most one instance has a live lease at a time. Leader-only SQL checks the lease itself, so an instance that lost its
/// lease without noticing (a paused process) cannot act as leader. Stopping resigns, so another instance takes over at its
/// next attempt instead of after the TTL.
/// </remarks>
internal sealed class LeaderElector(Engine engine, Func<bool, CancellationToken, Task> leadershipChanged)
{
    private Task? _loop;

    /// <summary>Gets whether this instance believes it leads (the database has the final word).</summary>
    public bool IsLeader { get; private set; }

    public void Start(CancellationToken stop) => _loop = Internal.Background.Run(() => LoopAsync(stop));

    /// <summary>Waits for the loop to end (its token cancelled), then, if this instance leads, stops leading and resigns.</summary>
    public async Task StopAsync()
    {
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }

        if (IsLeader)
        {
            // Stop acting as leader before giving the lease up, so no successor is elected while this instance still acts.
            await LoseAsync(CancellationToken.None).ConfigureAwait(false);
            try
            {
                var batch = new NpgsqlBatch();
                await using (batch.ConfigureAwait(false))
                {
                    engine.Sql.Leader.AddResign(batch, engine.InstanceId);
                    await engine.ExecuteNonQueryAsync(batch, CancellationToken.None).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
            {
                Log.LeadershipFailed(engine.Logger, ex, engine.InstanceId);
            }
        }
    }

    private TimeSpan Period => TimeSpan.FromTicks(Math.Max(engine.Options.LeaderTtl.Ticks / 2, TimeSpan.FromMilliseconds(10).Ticks));

    private async Task LoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await TickAsync(stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                Log.LeadershipFailed(engine.Logger, ex, engine.InstanceId);
                engine.Hooks.Error(ex);
                if (IsLeader)
                {
                    // Without a confirmed refresh we cannot know we still lead: act as if we did not.
                    try
                    {
                        await LoseAsync(stop).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (stop.IsCancellationRequested)
                    {
                        // The stop came while OnLostLeadership honoured it: the loop ends as a stop ends it (escaping, the
                        // cancellation failed StopAsync before the drain, the heartbeat's stop and the deregistration).
                        return;
                    }
                }
            }

            try
            {
                await Task.Delay(Period, engine.Time, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private async Task TickAsync(CancellationToken stop)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            if (IsLeader)
            {
                engine.Sql.Leader.AddRefresh(batch, engine.InstanceId, engine.Options.LeaderTtl);
            }
            else
            {
                engine.Sql.Leader.AddTryAcquire(batch, engine.InstanceId, engine.Options.LeaderTtl);
            }

            var held = await engine.ExecuteNonQueryAsync(batch, stop).ConfigureAwait(false) > 0;
            if (held == IsLeader)
            {
                return;
            }

            if (held)
            {
                IsLeader = true;
                Log.BecameLeader(engine.Logger, engine.InstanceId);
                await leadershipChanged(true, stop).ConfigureAwait(false);
            }
            else
            {
                await LoseAsync(stop).ConfigureAwait(false);
            }
        }
    }

    private async Task LoseAsync(CancellationToken cancellationToken)
    {
        IsLeader = false;
        Log.LostLeadership(engine.Logger, engine.InstanceId);
        await leadershipChanged(false, cancellationToken).ConfigureAwait(false);
    }
}
