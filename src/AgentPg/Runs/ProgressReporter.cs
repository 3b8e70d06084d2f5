using Npgsql;

namespace AgentPg.Runs;

/// <summary>Records that a run's worker is alive while Claude streams (its answer, or a summary written by the run's
/// automatic compaction), at most every few seconds, so RescueTimeout does not fire on long answers.</summary>
internal sealed class ProgressReporter(Engine engine, Run run, CancellationToken token)
{
    private long _last = engine.Time.GetTimestamp();

    public void Report()
    {
        var interval = TimeSpan.FromTicks(Math.Min(engine.Options.RunRescue.Timeout.Ticks / 4, TimeSpan.FromSeconds(10).Ticks));
        var now = engine.Time.GetTimestamp();
        var last = Interlocked.Read(ref _last);
        if (engine.Time.GetElapsedTime(last, now) < interval || Interlocked.CompareExchange(ref _last, now, last) != last)
        {
            return;
        }

        _ = WriteAsync();
    }

    /// <summary>Records the run's progress now, whenever it was last recorded: before a wait (Claude unavailable), which
    /// can be as long as a quarter of the rescue timeout, so the time before it does not add to it.</summary>
    public void ReportNow()
    {
        Interlocked.Exchange(ref _last, engine.Time.GetTimestamp());
        _ = WriteAsync();
    }

    private async Task WriteAsync()
    {
        try
        {
            var command = engine.Sql.Runs.ProgressCommand(engine.DataSource, run, engine.InstanceId);
            await using (command.ConfigureAwait(false))
            {
                await command.ExecuteNonQueryAsync(token).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or OperationCanceledException or TimeoutException or ObjectDisposedException or InvalidOperationException)
        {
            // Best effort: a missed progress mark only matters if the stream stalls for RescueTimeout.
        }
    }
}
