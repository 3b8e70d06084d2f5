using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Npgsql;

namespace AgentPg.Benchmarks;

/// <summary>A run reached a final state: which one, and when the harness learned it (a <see cref="Stopwatch"/> timestamp).</summary>
internal readonly record struct Completion(string State, long Timestamp);

/// <summary>Learns that runs finished from AgentPg's own <c>agentpg_run_finalized</c> NOTIFY, on one connection of its own.</summary>
/// <remarks>
/// The notification is sent by the completing transaction anyway, so waiting this way adds no query per run (unlike
/// <c>WaitForRunAsync</c>, which reads the run and builds its response): the load on the database is the engine's.
/// </remarks>
internal sealed class RunCompletions : IAsyncDisposable
{
    private readonly ConcurrentDictionary<Guid, TaskCompletionSource<Completion>> _runs = new();
    private readonly CancellationTokenSource _stop = new();
    private readonly NpgsqlConnection _connection;
    private Task? _loop;
    private long _notifications;

    private RunCompletions(NpgsqlConnection connection) => _connection = connection;

    /// <summary>Notifications received so far.</summary>
    public long Count => Interlocked.Read(ref _notifications);

    public static async Task<RunCompletions> StartAsync(NpgsqlDataSource dataSource, string schema)
    {
        var connection = await dataSource.OpenConnectionAsync();
        var completions = new RunCompletions(connection);
        connection.Notification += completions.OnNotification;
        var channel = schema == "public" ? "agentpg_run_finalized" : schema + ".agentpg_run_finalized";
        await using (var listen = new NpgsqlCommand($"LISTEN \"{channel}\"", connection))
        {
            await listen.ExecuteNonQueryAsync();
        }

        completions._loop = Task.Run(completions.LoopAsync);
        return completions;
    }

    /// <summary>Completes when the run is final (also when that happened before this call).</summary>
    public Task<Completion> WaitAsync(Guid runId) => Get(runId).Task;

    /// <summary>Forgets a run whose completion was consumed.</summary>
    public void Forget(Guid runId) => _runs.TryRemove(runId, out _);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_loop is not null)
        {
            await _loop;
        }

        await _connection.DisposeAsync();
        _stop.Dispose();
    }

    private TaskCompletionSource<Completion> Get(Guid runId)
        => _runs.GetOrAdd(runId, static _ => new TaskCompletionSource<Completion>(TaskCreationOptions.RunContinuationsAsynchronously));

    private async Task LoopAsync()
    {
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                await _connection.WaitAsync(_stop.Token);
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    private void OnNotification(object sender, NpgsqlNotificationEventArgs e)
    {
        var now = Stopwatch.GetTimestamp();
        Interlocked.Increment(ref _notifications);
        using var payload = JsonDocument.Parse(e.Payload);
        var root = payload.RootElement;
        if (root.TryGetProperty("run_id", out var id) && id.TryGetGuid(out var runId))
        {
            var state = root.TryGetProperty("state", out var s) ? s.GetString() ?? "" : "";
            Get(runId).TrySetResult(new Completion(state, now));
        }
    }
}
