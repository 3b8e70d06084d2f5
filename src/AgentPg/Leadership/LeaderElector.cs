using AgentPg.Diagnostics;
using AgentPg.Runs;
using AgentPg.Storage;

namespace AgentPg.Leadership;

/// <summary>Holds the leader lease (agentpg_leader) when it can: tries to acquire it every LeaderTtl/2, refreshes it at
/// the same pace while leading, and runs the leader-only jobs (stale-instance cleanup and rescue) on their intervals.</summary>
/// <remarks>
/// At most one instance has a live lease at a time. The leader-only SQL checks the lease itself, so an instance that lost
/// its lease without noticing (a paused process) cannot act as leader. Stopping resigns, so another instance takes over
/// at its next attempt instead of after the TTL.
/// </remarks>
internal sealed class LeaderElector(Engine engine, HookRunner hooks)
{
    private Task? _loop;
    private long _lastCleanup;
    private long _lastRescue;
    private long _lastRefresh;

    /// <summary>Gets whether this instance believes it leads (the database has the final word).</summary>
    public bool IsLeader { get; private set; }

    public void Start(CancellationToken stop) => _loop = Task.Run(() => LoopAsync(stop), CancellationToken.None);

    public async Task StopAsync()
    {
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }

        if (IsLeader)
        {
            IsLeader = false;
            try
            {
                await ExecuteAsync(engine.Sql.Leader.Resign, CancellationToken.None, P.Text(engine.InstanceId)).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is Npgsql.NpgsqlException or TimeoutException)
            {
                Log.LeadershipFailed(engine.Logger, ex, engine.InstanceId);
            }

            Log.LostLeadership(engine.Logger, engine.InstanceId);
            await hooks.LostLeadershipAsync(CancellationToken.None).ConfigureAwait(false);
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
                hooks.Error(ex);
                if (IsLeader)
                {
                    // Without a confirmed refresh we cannot know we still lead: act as if we did not.
                    await LoseAsync(stop).ConfigureAwait(false);
                }
            }

            try
            {
                await Task.Delay(NextWait(), engine.Time, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return;
            }
        }
    }

    private TimeSpan NextWait()
    {
        if (!IsLeader)
        {
            return Period;
        }

        // Wake for whichever comes first: the lease refresh or a leader job.
        var untilCleanup = engine.Options.CleanupInterval - engine.Time.GetElapsedTime(_lastCleanup);
        var untilRescue = engine.Options.RunRescue.Interval - engine.Time.GetElapsedTime(_lastRescue);
        var wait = new[] { Period, untilCleanup, untilRescue }.Min();
        return wait < TimeSpan.FromMilliseconds(10) ? TimeSpan.FromMilliseconds(10) : wait;
    }

    private async Task TickAsync(CancellationToken stop)
    {
        if (IsLeader)
        {
            if (engine.Time.GetElapsedTime(_lastRefresh) >= Period * 0.9)
            {
                var refreshed = await ExecuteAsync(engine.Sql.Leader.Refresh, stop, P.Text(engine.InstanceId), P.Interval(engine.Options.LeaderTtl)).ConfigureAwait(false);
                if (refreshed == 0)
                {
                    await LoseAsync(stop).ConfigureAwait(false);
                    return;
                }

                _lastRefresh = engine.Time.GetTimestamp();
            }
        }
        else
        {
            var acquired = await ExecuteAsync(engine.Sql.Leader.TryAcquire, stop, P.Text(engine.InstanceId), P.Interval(engine.Options.LeaderTtl)).ConfigureAwait(false);
            if (acquired == 0)
            {
                return;
            }

            IsLeader = true;
            _lastRefresh = engine.Time.GetTimestamp();
            _lastCleanup = 0;
            _lastRescue = 0;
            Log.BecameLeader(engine.Logger, engine.InstanceId);
            await hooks.BecameLeaderAsync(stop).ConfigureAwait(false);
        }

        if (_lastCleanup == 0 || engine.Time.GetElapsedTime(_lastCleanup) >= engine.Options.CleanupInterval)
        {
            _lastCleanup = engine.Time.GetTimestamp();
            await CleanupAsync(stop).ConfigureAwait(false);
        }

        if (_lastRescue == 0 || engine.Time.GetElapsedTime(_lastRescue) >= engine.Options.RunRescue.Interval)
        {
            _lastRescue = engine.Time.GetTimestamp();
            await RescueAsync(stop).ConfigureAwait(false);
        }
    }

    private async Task LoseAsync(CancellationToken stop)
    {
        IsLeader = false;
        Log.LostLeadership(engine.Logger, engine.InstanceId);
        await hooks.LostLeadershipAsync(stop).ConfigureAwait(false);
    }

    private async Task CleanupAsync(CancellationToken stop)
    {
        var command = engine.DataSource.CreateCommand(engine.Sql.Leader.DeleteStaleInstances);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(P.Text(engine.InstanceId));
            command.Parameters.Add(P.Interval(engine.Options.InstanceTtl));
            command.Parameters.Add(P.Int(engine.Options.RunRescue.MaxAttempts));
            var removed = await command.QueryListAsync(r => r.GetString(0), stop).ConfigureAwait(false);
            foreach (var instance in removed)
            {
                Log.StaleInstanceRemoved(engine.Logger, instance);
            }
        }

        var expired = engine.DataSource.CreateCommand(engine.Sql.RunEvents.DeleteExpired);
        await using (expired.ConfigureAwait(false))
        {
            expired.Parameters.Add(P.Interval(engine.Options.RunEventRetention));
            var count = await expired.ExecuteNonQueryAsync(stop).ConfigureAwait(false);
            if (count > 0)
            {
                Log.RunEventsExpired(engine.Logger, count);
            }
        }
    }

    private async Task RescueAsync(CancellationToken stop)
    {
        var command = engine.DataSource.CreateCommand(engine.Sql.Leader.Rescue);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.Add(P.Text(engine.InstanceId));
            command.Parameters.Add(P.Interval(engine.Options.InstanceTtl));
            command.Parameters.Add(P.Interval(engine.Options.RunRescue.Timeout));
            command.Parameters.Add(P.Int(engine.Options.RunRescue.MaxAttempts));
            var reader = await command.ExecuteReaderAsync(stop).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                if (!await reader.ReadAsync(stop).ConfigureAwait(false))
                {
                    return;
                }

                var dead = reader.GetFieldValue<string[]>(0);
                var released = reader.GetInt32(1);
                var continued = reader.GetInt32(2);
                if (released > 0 || continued > 0)
                {
                    Log.Rescued(engine.Logger, released, continued, string.Join(", ", dead));
                    // Released work is claimable now: look at once rather than at the next poll.
                    engine.StreamingWake.Set();
                    engine.BatchWake.Set();
                    engine.ToolWake.Set();
                }
            }
        }
    }

    private async Task<int> ExecuteAsync(string sql, CancellationToken cancellationToken, params Npgsql.NpgsqlParameter[] parameters)
    {
        var command = engine.DataSource.CreateCommand(sql);
        await using (command.ConfigureAwait(false))
        {
            command.Parameters.AddRange(parameters);
            return await command.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }
}
