using System.Collections.Concurrent;
using System.Reflection;
using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Notifications;
using AgentPg.Queries;
using AgentPg.Runs;
using AgentPg.Runs.Events;
using AgentPg.Storage;
using AgentPg.Workers;
using Anthropic;
using Anthropic.Core;
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
    private static readonly string s_version =
        typeof(AgentPgClient).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "0.0.0";

    private readonly NpgsqlDataSource _dataSource;
    private readonly AgentPgOptions _options;
    private readonly Sql _sql;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly ConcurrentDictionary<string, ITool> _tools = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _lifecycle = new(1, 1);
    private readonly SemaphoreSlim _toolSync = new(1, 1);
    private readonly List<IClientAttachment> _attachments = [];
    private readonly Engine _engine;
    private readonly NotificationListener _listener;
    private readonly RunEventFeeds _feeds;
    private readonly SchemaCheck _schemaCheck;

    // Runs this client created and handed to its own workers directly; their agentpg_run_created notification, which comes
    // back to this client too, then wakes nobody. Bounded: entries whose notification never arrives are dropped in bulk.
    private readonly ConcurrentDictionary<Guid, byte> _wokenLocally = new();
    private volatile bool _started;
    private volatile bool _disposed;
    private Task? _disposal;
    private readonly Lock _disposeLock = new();
    private WorkerSet? _workers;
    private PendingRunsProbe? _pendingProbe;
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
        _listener.Received += OnNotification;
        _listener.Reconnected += OnListenerReconnected;
        _feeds = new RunEventFeeds(ReadEventPageAsync, options.RunPollInterval, _time, _logger);
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
        var errors = options.Validate();
        if (errors.Count > 0)
        {
            throw new ArgumentException("Invalid AgentPgOptions:" + Environment.NewLine + "  " + string.Join(Environment.NewLine + "  ", errors), nameof(options));
        }

        var copy = options.Clone();
        copy.ApiKey ??= Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY") is { Length: > 0 } key ? key : null;
        copy.InstanceId ??= Guid.NewGuid().ToString();
        copy.InstanceName ??= SafeHostName();
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
            await EnsureSchemaAsync(cancellationToken).ConfigureAwait(false);
            await RegisterInstanceAsync(cancellationToken).ConfigureAwait(false);
            await EnsureListenerAsync(cancellationToken).ConfigureAwait(false);
            await _engine.Deltas.LoadAsync(cancellationToken).ConfigureAwait(false);
            _engine.Claude = CreateClaudeClient();
            _workers = new WorkerSet(_engine, RegisterAgainAsync);
            _workers.Start();
            _pendingProbe = new PendingRunsProbe(_options.Schema, InstanceId, CountPendingRunsAsync, _time);
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
                released = await DeregisterInstanceAsync(CancellationToken.None).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is NpgsqlException or TimeoutException)
            {
                Log.StopFailed(_logger, ex, InstanceId);
            }

            (_engine.Claude as IDisposable)?.Dispose();
            _engine.Claude = null;
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
    /// <remarks>Safe to call any number of times, also concurrently: every call completes when the one disposal did.</remarks>
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
        await NotifyAttachmentsAsync(static a => a.ClientDisposedAsync().AsTask()).ConfigureAwait(false);
        await _listener.DisposeAsync().ConfigureAwait(false);
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

    private IAnthropicClient CreateClaudeClient() => Claude.ClaudeClients.Create(_options);

    private async Task<long> CountPendingRunsAsync(CancellationToken cancellationToken)
    {
        var command = _dataSource.CreateCommand(_sql.Runs.CountPending);
        await using (command.ConfigureAwait(false))
        {
            return await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false) is long count ? count : 0;
        }
    }

    private Task RegisterAgainAsync(CancellationToken cancellationToken) => RegisterInstanceAsync(cancellationToken);

    private Task EnsureListenerAsync(CancellationToken cancellationToken)
        => _listener.StartAsync(TimeSpan.FromSeconds(5), cancellationToken);

    private void OnNotification(Notification notification)
    {
        switch (notification.Channel)
        {
            case Channels.RunCreated:
                if (notification.RunId is not { } created || !_wokenLocally.TryRemove(created, out _))
                {
                    Wake(notification.RunMode);
                }

                if (notification is { ParentRunId: { } parent, RunId: { } child })
                {
                    // Callbacks reach child runs even when another instance created them.
                    _engine.Callbacks.Inherit(parent, child);
                }

                break;
            case Channels.RunState:
                Wake(notification.RunMode);
                break;
            case Channels.RunFinalized:
                if (notification.RunId is { } runId)
                {
                    _engine.Waiters.Signal(runId);
                    _engine.InFlight.Cancel(runId);
                    if (notification.ParentRunId is { } parentRun && _engine.Callbacks.Has(parentRun))
                    {
                        _ = FireAgentToolCompleteAsync(runId);
                    }

                    _engine.Callbacks.Remove(runId);
                    if (notification.ParentRunId is null)
                    {
                        _engine.Deltas.Finished(runId);
                    }
                }

                // A finished root run may have held back the session's next one; nothing else became claimable.
                if (notification.NextRunMode is { } nextRunMode)
                {
                    Wake(nextRunMode);
                }

                break;
            case Channels.ToolPending:
                _engine.ToolWake.Set();
                break;
            case Channels.RunEvent:
                if (notification.RunId is { } eventRoot)
                {
                    _feeds.Signal(eventRoot);
                }

                break;
            case Channels.RunWatch:
                if (notification.RunId is { } watchedRoot)
                {
                    _engine.Deltas.Watched(watchedRoot);
                }

                break;
        }
    }

    private void OnListenerReconnected()
    {
        // Notifications sent while disconnected are lost: look again.
        Wake(null);
        _engine.ToolWake.Set();
        _engine.Waiters.SignalAll();
        _feeds.SignalAll();
        if (_started)
        {
            _ = _engine.Deltas.LoadAsync(CancellationToken.None);
        }
    }

    private void Wake(string? runMode)
    {
        if (runMode != "batch")
        {
            _engine.StreamingWake.Set();
        }

        if (runMode != "streaming")
        {
            _engine.BatchWake.Set();
        }
    }

    /// <summary>OnToolComplete of an agent tool: its child run finished and the trigger completed the execution.</summary>
    private async Task FireAgentToolCompleteAsync(Guid childRunId)
    {
        try
        {
            if (await ToolExecutionSql.ReadAgentToolEventAsync(_dataSource, _sql, childRunId, CancellationToken.None).ConfigureAwait(false) is { } e)
            {
                _engine.Callbacks.FireComplete(e);
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException)
        {
            Log.CallbackFailed(_logger, ex, "OnToolComplete", childRunId, "(agent tool)");
        }
    }

    private void CancelBatchesInBackground(IReadOnlyList<string> batchIds)
    {
        if (batchIds.Count == 0 || _engine.Claude is not { } claude)
        {
            return;
        }

        _ = Task.Run(async () =>
        {
            foreach (var batchId in batchIds.Distinct(StringComparer.Ordinal))
            {
                try
                {
                    await claude.Messages.Batches.Cancel(batchId, new Anthropic.Models.Messages.Batches.BatchCancelParams(), CancellationToken.None).ConfigureAwait(false);
                    var ended = Db.Command(_dataSource, null, _sql.Iterations.EndBatchesById, P.TextArray([batchId]));
                    await using (ended.ConfigureAwait(false))
                    {
                        await ended.ExecuteNonQueryAsync(CancellationToken.None).ConfigureAwait(false);
                    }
                }
                catch (Exception ex) when (ex is Anthropic.Exceptions.AnthropicException or HttpRequestException or IOException or NpgsqlException
                                               or OperationCanceledException or InvalidOperationException or ObjectDisposedException)
                {
                    // Any started instance's batch poller cancels it later. (Timeouts surface as OperationCanceledException; a
                    // client stopped meanwhile as ObjectDisposedException or InvalidOperationException.)
                    Log.BatchCancelFailed(_logger, ex, batchId);
                }
            }
        });
    }

    private async Task EnsureSchemaAsync(CancellationToken cancellationToken)
    {
        var migrator = new AgentPgMigrator(_dataSource, _options.Schema);
        if (_options.MigrateOnStart)
        {
            var reached = await migrator.MigrateAsync(null, cancellationToken).ConfigureAwait(false);
            Log.MigratedOnStart(_logger, _options.Schema, reached);
            _schemaCheck.MarkVerified();
            return;
        }

        var version = await migrator.GetVersionAsync(cancellationToken).ConfigureAwait(false);
        if (version != AgentPgMigrator.LatestVersion)
        {
            throw SchemaCheck.Mismatch(_options.Schema, "Start", version);
        }

        _schemaCheck.MarkVerified();
    }

    /// <summary>Registers the instance and its tools in one transaction (the tool rows reference the instance row).</summary>
    private async Task RegisterInstanceAsync(CancellationToken cancellationToken)
    {
        var batch = _dataSource.CreateBatch();
        await using (batch.ConfigureAwait(false))
        {
            var register = new NpgsqlBatchCommand(_sql.Instances.Register);
            register.Parameters.Add(P.Text(InstanceId));
            register.Parameters.Add(P.Text(_options.InstanceName));
            register.Parameters.Add(P.Text(SafeHostName()));
            register.Parameters.Add(P.Int(Environment.ProcessId));
            register.Parameters.Add(P.Text(s_version));
            register.Parameters.Add(P.Int(_options.MaxConcurrentRuns));
            register.Parameters.Add(P.Int(_options.MaxConcurrentTools));
            batch.BatchCommands.Add(register);
            AddToolSync(batch, [.. _tools.Values]);
            await batch.ExecuteNonQueryAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<int> DeregisterInstanceAsync(CancellationToken cancellationToken)
    {
        var batch = _dataSource.CreateBatch();
        await using (batch.ConfigureAwait(false))
        {
            var release = new NpgsqlBatchCommand(_sql.Instances.ReleaseWork);
            release.Parameters.Add(P.Text(InstanceId));
            batch.BatchCommands.Add(release);
            var delete = new NpgsqlBatchCommand(_sql.Instances.Delete);
            delete.Parameters.Add(P.Text(InstanceId));
            batch.BatchCommands.Add(delete);
            var released = await batch.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return released is int n ? n : 0;
        }
    }

    /// <summary>Gets how long ago this instance last recorded a heartbeat, by the database clock.</summary>
    /// <returns>The age, or <see langword="null"/> when the instance is not registered (not started, or evicted as stale).</returns>
    internal async Task<TimeSpan?> GetHeartbeatAgeAsync(CancellationToken cancellationToken)
    {
        var command = Db.Command(_dataSource, null, _sql.Instances.HeartbeatAge, P.Text(InstanceId));
        await using (command.ConfigureAwait(false))
        {
            var seconds = await command.ExecuteScalarAsync(cancellationToken).ConfigureAwait(false);
            return seconds is double s ? TimeSpan.FromSeconds(s) : null;
        }
    }

    private static string SafeHostName()
    {
        try
        {
            return Environment.MachineName is { Length: > 0 } name ? name : "unknown";
        }
        catch (InvalidOperationException)
        {
            return "unknown";
        }
    }
}
