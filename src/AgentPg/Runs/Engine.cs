using System.Collections.Concurrent;
using AgentPg.Storage;
using Claude_ = AgentPg.Claude;
using AgentPg.Workers;
using Anthropic;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>What the workers of one client share. Built once with the client and never changed: starting and stopping the
/// client start and stop its workers, not this.</summary>
internal sealed class Engine : IDisposable
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
        Waiters = new RunWaiters((runIds, ct) => sql.Runs.StatesAsync(dataSource, runIds, ct), options.TimeProvider, options.RunPollInterval);
        Hooks = new HookRunner(options.Hooks, logger);
        Notifier = new Notifier(dataSource, options.PrepareStatements, sql.Schema, logger);
        Deltas = new Events.DeltaPublisher(this);
        var transactional = Math.Max(1, PoolBudget.TransactionalToolLimit(dataSource, options.MaxConcurrentTools));
        TransactionalTools = new SemaphoreSlim(transactional, transactional);
        // One model client for streaming, batches and count_tokens, whether or not the client is started (a producer
        // compacts and counts tokens with it too); none without an API key.
        Claude = string.IsNullOrEmpty(options.ApiKey) ? null : Claude_.ClaudeClients.Create(options);
        Compactor = new Compaction.Compactor(this);
        ToolResults = new ToolResultWriter(this);
    }

    /// <summary>Writes tool results, those of one run that end together in one transaction.</summary>
    public ToolResultWriter ToolResults { get; }

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

    /// <summary>Claude's memory tool, which this instance runs for the memory calls of agents with <see cref="AgentDefinition.Memory"/>.</summary>
    public Memory.MemoryTool MemoryTool => field ??= new Memory.MemoryTool(Sql.Memory);

    /// <summary>Writes this instance's registration of one tool as <see cref="Tools"/> has it now, after any such write already
    /// under way (the client's <see cref="InstanceRegistration.SyncToolInBackgroundAsync"/>; set once with the client).</summary>
    public Func<string, Task> SyncToolRegistration { get; set; } = _ => Task.CompletedTask;

    public InFlightWork InFlight { get; } = new();

    public HeldWork Held { get; } = new();

    public RunCallbacks Callbacks { get; }

    public RunWaiters Waiters { get; }

    public WakeSignal StreamingWake { get; } = new();

    public WakeSignal BatchWake { get; } = new();

    public WakeSignal ToolWake { get; } = new();

    /// <summary>Wakes every worker (streaming, batch, tools): work given back by the leader is claimable now, so the workers
    /// look at once rather than at their next poll.</summary>
    public void WakeAllWorkers()
    {
        StreamingWake.Set();
        BatchWake.Set();
        ToolWake.Set();
    }

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

    /// <summary>The Claude client (streaming, Message Batches, count_tokens), or null when the client has no API key (it can
    /// then create and read runs but not process them: <c>StartAsync</c> refuses).</summary>
    public IAnthropicClient? Claude { get; }

    /// <summary>Releases the model client's HTTP resources (when the client is disposed).</summary>
    public void Dispose() => (Claude as IDisposable)?.Dispose();
}

/// <summary>A run failure with the error_type it is recorded under.</summary>
internal sealed class RunFailureException(string errorType, string message, Exception? inner = null) : Exception(message, inner)
{
    public string ErrorType { get; } = errorType;
}
