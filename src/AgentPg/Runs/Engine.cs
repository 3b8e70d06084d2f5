using System.Collections.Concurrent;
using AgentPg.Storage;
using Claude_ = AgentPg.Claude;
using AgentPg.Workers;
using Anthropic;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>What the workers of one client share.</summary>
internal sealed class Engine
{
    public Engine(NpgsqlDataSource dataSource, AgentPgOptions options, Sql sql, ILogger logger, string instanceId, ConcurrentDictionary<string, ITool> tools)
    {
        DataSource = dataSource;
        Options = options;
        Sql = sql;
        Logger = logger;
        InstanceId = instanceId;
        Tools = tools;
        Callbacks = new RunCallbacks(dataSource, sql, options.TimeProvider, logger);
        Hooks = new HookRunner(options.Hooks, logger);
        Notifier = new Notifier(dataSource, options.PrepareStatements, sql.Schema, logger);
        Deltas = new Events.DeltaPublisher(this);
        var transactional = Math.Max(1, PoolBudget.TransactionalToolLimit(dataSource, options.MaxConcurrentTools));
        TransactionalTools = new SemaphoreSlim(transactional, transactional);
        Compactor = new Compaction.Compactor(this, () => ModelClient);
    }

    /// <summary>Publishes streamed text to watchers of the run (WatchRunAsync).</summary>
    public Events.DeltaPublisher Deltas { get; }

    public Compaction.Compactor Compactor { get; }

    /// <summary>Slots for transactional tools, each of which holds a connection while it runs (see <see cref="PoolBudget"/>).</summary>
    public SemaphoreSlim TransactionalTools { get; }

    public Notifier Notifier { get; }

    public HookRunner Hooks { get; }

    public NpgsqlDataSource DataSource { get; }

    public AgentPgOptions Options { get; }

    public Sql Sql { get; }

    public ILogger Logger { get; }

    public TimeProvider Time => Options.TimeProvider;

    public string InstanceId { get; }

    public ConcurrentDictionary<string, ITool> Tools { get; }

    public InFlightWork InFlight { get; } = new();

    public HeldWork Held { get; } = new();

    public RunCallbacks Callbacks { get; }

    public RunWaiters Waiters { get; } = new();

    public WakeSignal StreamingWake { get; } = new();

    public WakeSignal BatchWake { get; } = new();

    public WakeSignal ToolWake { get; } = new();

    /// <summary>Executes a worker's batch (created with <c>new NpgsqlBatch()</c>) on a pooled connection of its own, prepared
    /// when <see cref="AgentPgOptions.PrepareStatements"/> is set.</summary>
    public Task<NpgsqlDataReader> ExecuteReaderAsync(NpgsqlBatch batch, CancellationToken cancellationToken)
        => batch.ExecuteReaderAsync(DataSource, Options.PrepareStatements, cancellationToken);

    /// <summary>Same as <see cref="ExecuteReaderAsync"/> for a batch that returns no rows.</summary>
    public Task<int> ExecuteNonQueryAsync(NpgsqlBatch batch, CancellationToken cancellationToken)
        => batch.ExecuteNonQueryAsync(DataSource, Options.PrepareStatements, cancellationToken);

    /// <summary>Executes a batch as <see cref="ExecuteReaderAsync"/> does and reads every row with <paramref name="read"/>.</summary>
    public Task<List<T>> QueryListAsync<T>(NpgsqlBatch batch, Func<NpgsqlDataReader, T> read, CancellationToken cancellationToken)
        => batch.QueryListAsync(DataSource, Options.PrepareStatements, read, cancellationToken);

    /// <summary>The Claude client; set when the client starts.</summary>
    public IAnthropicClient? Claude { get; set; }

    /// <summary>The Claude client for calls that do not need a started client (compaction): the started client's, else one
    /// made on first use; null without an API key.</summary>
    public IAnthropicClient? ModelClient
        => Claude ?? (string.IsNullOrEmpty(Options.ApiKey) ? null : LazyInitializer.EnsureInitialized(ref _modelClient, () => Claude_.ClaudeClients.Create(Options)));

    private IAnthropicClient? _modelClient;
}

/// <summary>A run failure with the error_type it is recorded under.</summary>
internal sealed class RunFailureException(string errorType, string message, Exception? inner = null) : Exception(message, inner)
{
    public string ErrorType { get; } = errorType;
}
