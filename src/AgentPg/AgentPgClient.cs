using System.Collections.Concurrent;
using AgentPg.Claude;
using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Notifications;
using AgentPg.Queries;
using AgentPg.Runs;
using AgentPg.Runs.Events;
using AgentPg.Storage;
using AgentPg.Workers;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace AgentPg;

/// <summary>The entry point of AgentPg: creates agents, sessions and runs, and — once started — processes runs as one
/// worker instance among any number of others sharing the database.</summary>
/// <remarks>
/// <para>A client that is never started is a producer: it creates agents, sessions and runs, reads them, cancels,
/// regenerates and waits. <see cref="StartAsync"/> registers the client as an instance and starts its workers.</para>
/// <para>Every client checks the schema version once, at <see cref="StartAsync"/> or at its first database call: against a
/// schema that is missing or at another version than <see cref="AgentPgMigrator.LatestVersion"/>, every method that reads or
/// writes the database throws <see cref="AgentPgException"/> with <see cref="AgentPgErrorCode.SchemaVersionMismatch"/> and a
/// message that says how to migrate.</para>
/// <para>All members are thread-safe.</para>
/// <para>Security: tool inputs are produced by a model and must be treated as untrusted input (see <see cref="ITool"/>).</para>
/// </remarks>
public sealed partial class AgentPgClient : IAsyncDisposable
{
    private readonly NpgsqlDataSource _dataSource;
    private readonly AgentPgOptions _options;
    private readonly Sql _sql;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, ITool> _tools = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _lifecycle = new(1, 1);
    private readonly List<IClientAttachment> _attachments = [];
    private readonly Engine _engine;
    private readonly NotificationListener _listener;
    private readonly RunEventFeeds _feeds;
    private readonly SchemaCheck _schemaCheck;

    private readonly NotificationRouter _router;
    private readonly InstanceRegistration _registration;
    private readonly BatchApi _batches;
    private volatile bool _started;
    private volatile bool _disposed;
    private Task? _disposal;
    private readonly Lock _disposeLock = new();
    private WorkerSet? _workers;
    private PendingRunsProbe? _pendingProbe;

    /// <summary>Whether this started client leads its schema now (the leader's jobs, <c>agentpg.runs.pending</c>).</summary>
    internal bool IsLeader => _workers?.IsLeader ?? false;

    /// <summary>The probe behind <c>agentpg.runs.pending</c> while started, for tests that read it now.</summary>
    internal PendingRunsProbe? PendingRunsProbe => _pendingProbe;
    private readonly QueryReader _queries;

    private AgentPgClient(NpgsqlDataSource dataSource, AgentPgOptions options)
    {
        _dataSource = dataSource;
        _options = options;
        _sql = new Sql(new SchemaName(options.Schema));
        _logger = options.LoggerFactory?.CreateLogger("AgentPg") ?? NullLogger.Instance;
        _time = options.TimeProvider;
        InstanceId = options.InstanceId!;
        _engine = new Engine(dataSource, options, _sql, _logger, InstanceId, _tools);
        _listener = new NotificationListener(dataSource, _sql.Schema, InstanceId, _time, _logger);
        _schemaCheck = new SchemaCheck(dataSource, options.Schema);
        _queries = new QueryReader(dataSource, _sql.Queries);
        _feeds = new RunEventFeeds(ReadEventPageAsync, (roots, ct) => _sql.RunEvents.LastSequencesAsync(_dataSource, roots, ct), options.RunPollInterval,
            _time, _logger, EventReadFaultAsync);
        _router = new NotificationRouter(_engine, _feeds, () => _started);
        _registration = new InstanceRegistration(dataSource, _sql, options, InstanceId, _tools, _logger);
        _engine.SyncToolRegistration = _registration.SyncToolInBackgroundAsync;
        _batches = new BatchApi(_engine);
        _listener.Received += _router.Route;
        _listener.Reconnected += _router.Reconnected;
    }

    /// <summary>Creates a client.</summary>
    /// <param name="dataSource">The PostgreSQL database (its schema must be migrated before processing starts; see <see cref="AgentPgMigrator"/>).</param>
    /// <param name="options">The options; the client keeps a validated copy.</param>
    /// <returns>A client that is not started.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names each invalid option and how to fix it.</exception>
    public static AgentPgClient Create(NpgsqlDataSource dataSource, AgentPgOptions options)
    {
        ArgumentNullException.ThrowIfNull(dataSource);
        ArgumentNullException.ThrowIfNull(options);
        OptionErrors.ThrowIfAny(options.Validate(), nameof(AgentPgOptions), nameof(options));
        var copy = options.Clone();
        copy.ApiKey ??= Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY") is { Length: > 0 } key ? key : null;
        copy.InstanceId ??= Guid.NewGuid().ToString();
        copy.InstanceName ??= InstanceRegistration.HostName;
        return new AgentPgClient(dataSource, copy);
    }

    /// <summary>Gets this instance's id (<see cref="AgentPgOptions.InstanceId"/> or a generated GUID).</summary>
    public string InstanceId { get; }

    /// <summary>Gets a copy of the client's options, with defaults resolved.</summary>
    /// <remarks>Each call returns a new copy (hooks and nested options included): changing it never changes the running
    /// client. To run with other options, create another client.</remarks>
    public AgentPgOptions Options => _options.Clone();

    /// <summary>Gets the engine state this client shares with its workers (tests inspect its tables).</summary>
    internal Engine Engine => _engine;

    /// <summary>Gets the data source the client works on (for the hosting integration and health checks).</summary>
    internal NpgsqlDataSource DataSource => _dataSource;

    /// <summary>Gets whether <see cref="DisposeAsync"/> has stopped the client (add-ons refuse to attach to it).</summary>
    internal bool IsDisposed => _disposed;

    /// <summary>Gets whether <see cref="StartAsync"/> has completed and <see cref="StopAsync"/> has not been called.</summary>
    public bool IsStarted => _started;

    /// <summary>Registers this instance and its tools and starts processing runs.</summary>
    /// <param name="cancellationToken">Cancels starting; it does not stop a started client (use <see cref="StopAsync"/>).</param>
    /// <returns>A task that completes when the instance is registered and its workers run.</returns>
    /// <exception cref="AgentPgException">The database schema is missing or at another version
    /// (<see cref="AgentPgErrorCode.SchemaVersionMismatch"/>, with instructions).</exception>
    /// <exception cref="InvalidOperationException">The client is already started (misuse: call <see cref="StopAsync"/> first),
    /// or no Claude API key is configured.</exception>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        await _lifecycle.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            if (_started)
            {
                // Misuse, so a BCL exception (STYLE: misuse raises BCL exceptions, domain failures AgentPgException).
                throw new InvalidOperationException(
                    $"The client (instance {InstanceId}) is already started. Start it once; to restart it, call StopAsync first.");
            }

            if (string.IsNullOrEmpty(_options.ApiKey))
            {
                throw new InvalidOperationException(
                    "No Claude API key: set AgentPgOptions.ApiKey or the ANTHROPIC_API_KEY environment variable before StartAsync. " +
                    "(A client that only creates and reads runs does not need to be started.)");
            }

            PoolBudget.Validate(_dataSource, _options.MaxConcurrentTools, _tools.Values);
            await _schemaCheck.EnsureForStartAsync(_options.MigrateOnStart, _logger, cancellationToken).ConfigureAwait(false);
            await _registration.RegisterAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await EnsureListenerAsync(cancellationToken).ConfigureAwait(false);
                await _engine.Deltas.LoadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is not OutOfMemoryException)
            {
                // Not started after all (cancelled while waiting for the LISTEN connection): remove the instance row and its
                // tools now rather than leave an instance that never ran listed as live until InstanceTtl.
                await DeregisterAfterFailedStartAsync().ConfigureAwait(false);
                throw;
            }

            _workers = new WorkerSet(_engine, _registration.RegisterAsync);
            _workers.Start();
            _pendingProbe = new PendingRunsProbe(_options.Schema, InstanceId, CountPendingRunsAsync, () => _workers?.IsLeader ?? false, _time);
            Telemetry.Register(_pendingProbe);
            _started = true;
            Log.ClientStarted(_logger, InstanceId, _options.InstanceName!, _options.Schema, _tools.Count);
        }
        finally
        {
            _lifecycle.Release();
        }

        await NotifyAttachmentsAsync(static a => a.ClientStartedAsync()).ConfigureAwait(false);
    }

    /// <summary>Stops processing: stops claiming work, lets in-flight work finish until <paramref name="cancellationToken"/>
    /// fires, releases what is still held back to the queue, and deregisters the instance.</summary>
    /// <param name="cancellationToken">The hard deadline for in-flight work.</param>
    /// <returns>A task that completes when the instance is deregistered. Does nothing when the client is not started.</returns>
    /// <remarks>Released work is never failed: another instance (or this one, restarted) picks it up.</remarks>
    public async Task StopAsync(CancellationToken cancellationToken = default)
    {
        await _lifecycle.WaitAsync(CancellationToken.None).ConfigureAwait(false);
        try
        {
            if (!_started)
            {
                return;
            }

            _started = false;
            if (_pendingProbe is { } probe)
            {
                Telemetry.Unregister(probe);
                _pendingProbe = null;
            }

            var workers = _workers!;
            _workers = null;
            await workers.StopAsync(cancellationToken).ConfigureAwait(false);
            var released = 0;
            try
            {
                // Deregistration must happen even when the caller's deadline already passed.
                released = await _registration.DeregisterAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
            {
                Log.StopFailed(_logger, ex, InstanceId);
            }

            Log.ClientStopped(_logger, InstanceId, released);
        }
        finally
        {
            _lifecycle.Release();
        }

        await NotifyAttachmentsAsync(static a => a.ClientStoppedAsync()).ConfigureAwait(false);
    }

    /// <summary>Stops the client if it is started (with no deadline for in-flight work beyond releasing it).</summary>
    /// <returns>A task that completes when the client is stopped.</returns>
    /// <remarks>Safe to call any number of times, also concurrently: every call completes when the one disposal did. Open
    /// <see cref="WatchRunAsync"/> enumerations and <see cref="WaitForRunAsync"/> calls end with <see cref="ObjectDisposedException"/>
    /// (the runs themselves go on).</remarks>
    public ValueTask DisposeAsync()
    {
        Task disposal;
        lock (_disposeLock)
        {
            disposal = _disposal ??= DisposeCoreAsync();
        }

        return new ValueTask(disposal);
    }

    private async Task DisposeCoreAsync()
    {
        using (var cts = new CancellationTokenSource())
        {
            await cts.CancelAsync().ConfigureAwait(false);
            await StopAsync(cts.Token).ConfigureAwait(false);
        }

        _disposed = true;
        // Watches and waits still open end with ObjectDisposedException (they check _disposed when woken) and stop reading.
        _feeds.Close();
        _engine.Waiters.SignalAll();
        await NotifyAttachmentsAsync(static a => a.ClientDisposedAsync().AsTask()).ConfigureAwait(false);
        await _listener.DisposeAsync().ConfigureAwait(false);
        _engine.Dispose();
        _registration.Dispose();
        // _lifecycle is not disposed: a StopAsync racing with the disposal must find it usable (it holds no wait handle).
    }

    /// <summary>Attaches something whose lifetime follows this client's (see <see cref="IClientAttachment"/>).</summary>
    internal void Attach(IClientAttachment attachment)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        lock (_attachments)
        {
            _attachments.Add(attachment);
        }
    }

    /// <summary>Detaches an attachment (it closed on its own).</summary>
    internal void Detach(IClientAttachment attachment)
    {
        lock (_attachments)
        {
            _attachments.Remove(attachment);
        }
    }

    private async Task NotifyAttachmentsAsync(Func<IClientAttachment, Task> notify)
    {
        IClientAttachment[] attachments;
        lock (_attachments)
        {
            attachments = [.. _attachments];
        }

        foreach (var attachment in attachments)
        {
            // An add-on's failure must not break the client's lifecycle; it is logged.
            try
            {
                await notify(attachment).ConfigureAwait(false);
            }
            catch (Exception ex)
            {
                Log.AttachmentFailed(_logger, ex, attachment.Name);
            }
        }
    }

    private async Task<long> CountPendingRunsAsync(CancellationToken cancellationToken)
    {
        return await _sql.Runs.CountPendingAsync(_dataSource, cancellationToken).ConfigureAwait(false);
    }

    private async Task DeregisterAfterFailedStartAsync()
    {
        try
        {
            await _registration.DeregisterAsync(CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
        {
            Log.StopFailed(_logger, ex, InstanceId);
        }
    }

    private Task EnsureListenerAsync(CancellationToken cancellationToken)
        => _listener.StartAsync(TimeSpan.FromSeconds(5), cancellationToken);

    /// <summary>Cancels batches at the API in the background when this client processes runs (otherwise any started
    /// instance's batch poller does it).</summary>
    private void CancelBatchesInBackground(IReadOnlyList<string> batchIds)
    {
        if (_started)
        {
            _batches.CancelInBackground(batchIds);
        }
    }

    /// <summary>Gets how long ago this instance last recorded a heartbeat, by the database clock.</summary>
    /// <returns>The age, or <see langword="null"/> when the instance is not registered (not started, or evicted as stale).</returns>
    internal Task<TimeSpan?> GetHeartbeatAgeAsync(CancellationToken cancellationToken) => _registration.GetHeartbeatAgeAsync(cancellationToken);

    /// <summary>Gets the holder of the live leader lease, or how long no instance has held one (from this instance's
    /// registration at the earliest), by the database clock.</summary>
    /// <returns>The status, or <see langword="null"/> when the instance is not registered.</returns>
    internal Task<(string? LeaderId, TimeSpan? Leaderless)?> GetLeaderStatusAsync(CancellationToken cancellationToken)
        => _registration.GetLeaderStatusAsync(cancellationToken);
}
