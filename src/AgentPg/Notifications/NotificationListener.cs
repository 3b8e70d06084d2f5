using AgentPg.Diagnostics;
using AgentPg.Storage;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AgentPg.Notifications;

/// <summary>One dedicated LISTEN connection per client. On loss it reconnects with backoff, LISTENs again and raises
/// <see cref="Reconnected"/> so subscribers run a catch-up poll (notifications sent while disconnected are lost).</summary>
internal sealed class NotificationListener : IAsyncDisposable
{
    private static readonly TimeSpan s_keepAlive = TimeSpan.FromSeconds(15);
    private static readonly TimeSpan s_maxBackoff = TimeSpan.FromSeconds(5);

    private readonly NpgsqlDataSource _dataSource;
    private readonly SchemaName _schema;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Dictionary<string, string> _baseNames;
    private readonly TaskCompletionSource _firstListen = new(TaskCreationOptions.RunContinuationsAsynchronously);

    // Completed when the first connection attempt ended, whether LISTEN succeeded or not.
    private readonly TaskCompletionSource _firstAttempt = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private volatile bool _stopWaiting;
    private Task? _loop;
    private NpgsqlConnection? _connection;

    public NotificationListener(NpgsqlDataSource dataSource, SchemaName schema, string instanceId, TimeProvider time, ILogger logger)
    {
        var name = "agentpg-listen:" + instanceId;
        ApplicationName = name.Length > 63 ? name[..63] : name;
        _dataSource = dataSource;
        _schema = schema;
        _time = time;
        _logger = logger;
        _baseNames = Channels.All.ToDictionary(schema.Channel, c => c, StringComparer.Ordinal);
    }

    /// <summary>Raised on the listener's thread for every notification; handlers must be quick and never throw.</summary>
    public event Action<Notification>? Received;

    /// <summary>Raised after a lost connection was re-established (not on the first connect).</summary>
    public event Action? Reconnected;

    /// <summary>The application_name of the LISTEN connection: <c>agentpg-listen:{instance id}</c> (at most 63 bytes).</summary>
    public string ApplicationName { get; }

    /// <summary>Starts listening (once); completes when the first connection attempt ended (LISTEN established or failed)
    /// or after <paramref name="timeout"/>. Only the first attempt is waited for: once it failed or timed out, later calls
    /// return at once while the loop keeps retrying in the background and polling covers the gap.</summary>
    public async Task StartAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        lock (_stop)
        {
            _loop ??= Internal.Background.Run(() => RunAsync(_stop.Token));
        }

        if (_stopWaiting || _firstAttempt.Task.IsCompleted)
        {
            return;
        }

        try
        {
            await _firstAttempt.Task.WaitAsync(timeout, _time, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // A connection attempt that hangs is not waited for again.
            _stopWaiting = true;
        }
    }

    /// <summary>Gets whether the LISTEN connection was established at least once.</summary>
    public bool HasListened => _firstListen.Task.IsCompleted;

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync().ConfigureAwait(false);
        if (_loop is not null)
        {
            await _loop.ConfigureAwait(false);
        }

        _stop.Dispose();
    }

    /// <summary>A healthy connection goes back to the pool: without its LISTENs and its name, which Npgsql's reset would remove
    /// only at its next use and, with <c>No Reset On Close</c>, never. Best effort: a connection that fails here is broken and
    /// never reused.</summary>
    private static async Task StopListeningAsync(NpgsqlConnection connection)
    {
        try
        {
            await NotifySql.StopListeningAsync(connection, StopListeningTimeoutSeconds).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException or InvalidOperationException or OperationCanceledException)
        {
            // The connection is broken and discarded: nothing listens on it any more.
        }
    }

    private const int StopListeningTimeoutSeconds = 2;

    private async Task RunAsync(CancellationToken stop)
    {
        var backoff = TimeSpan.FromMilliseconds(100);
        var connectedBefore = false;
        while (!stop.IsCancellationRequested)
        {
            NpgsqlConnection? connection = null;
            try
            {
                connection = await _dataSource.OpenConnectionAsync(stop).ConfigureAwait(false);
                connection.Notification += OnNotification;
                // Tagged so operators (and tests) can find the connection in pg_stat_activity.
                await NotifySql.StartListeningAsync(connection, ApplicationName, _baseNames.Keys, stop).ConfigureAwait(false);

                _connection = connection;
                backoff = TimeSpan.FromMilliseconds(100);
                _firstListen.TrySetResult();
                _firstAttempt.TrySetResult();
                if (connectedBefore)
                {
                    Log.ListenerReconnected(_logger, connection.ProcessID);
                    Reconnected?.Invoke();
                }

                connectedBefore = true;
                while (!stop.IsCancellationRequested)
                {
                    if (!await connection.WaitAsync(s_keepAlive, stop).ConfigureAwait(false))
                    {
                        // Quiet period: prove the connection is alive so a silently dead one is replaced.
                        await NotifySql.PingAsync(connection, stop).ConfigureAwait(false);
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                break;
            }
            catch (Exception ex) when (ex is NpgsqlException or IOException or TimeoutException or InvalidOperationException or OperationCanceledException)
            {
                Log.ListenerLost(_logger, ex, backoff.TotalMilliseconds);
                _firstAttempt.TrySetResult();
            }
            finally
            {
                _connection = null;
                if (connection is not null)
                {
                    connection.Notification -= OnNotification;
                    // Whether stopping or reconnecting after an error that left it open, it goes back to the pool.
                    if (connection.State == System.Data.ConnectionState.Open)
                    {
                        await StopListeningAsync(connection).ConfigureAwait(false);
                    }

                    await connection.DisposeAsync().ConfigureAwait(false);
                }
            }

            try
            {
                await Task.Delay(backoff, _time, stop).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                break;
            }

            backoff = TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, s_maxBackoff.Ticks));
        }
    }

    private void OnNotification(object sender, NpgsqlNotificationEventArgs e)
    {
        if (!_baseNames.TryGetValue(e.Channel, out var baseName))
        {
            return;
        }

        var notification = Notification.Parse(baseName, e.Payload);
        try
        {
            Received?.Invoke(notification);
        }
        catch (Exception ex)
        {
            Log.NotificationHandlerFailed(_logger, ex, baseName);
        }
    }
}
