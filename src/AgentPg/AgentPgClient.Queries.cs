namespace AgentPg;

// The read side for dashboards, admin pages and command-line tools: filtered lists with keyset pagination and recent
// statistics. Each takes the tenant filter and applies it in SQL.
public sealed partial class AgentPgClient
{
    private static readonly TimeSpan s_maxStatisticsWindow = TimeSpan.FromDays(31);

    /// <summary>Lists runs, newest first, one page at a time.</summary>
    /// <param name="query">The filters, page size and cursor; <see langword="null"/> lists every run, 25 per page.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The page and the cursor of the next one.</returns>
    /// <remarks>With <see cref="RunQuery.SessionMetadata"/> set, only runs of sessions whose metadata contains it are listed
    /// (the check is in the statement, so an id of another tenant in <see cref="RunQuery.Ids"/> returns nothing).</remarks>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="RunQuery.Limit"/> is outside 1..1000.</exception>
    /// <exception cref="ArgumentException">The cursor was not returned by this method, a state is not a <see cref="RunState"/>, or the
    /// metadata cannot be stored as JSON.</exception>
    public Task<ResultPage<Run>> ListRunsAsync(RunQuery? query = null, CancellationToken cancellationToken = default)
    {
        CheckStates(query?.States, "RunQuery.States", nameof(query));
        return ListAsync(query ?? new RunQuery(), q => q.Limit, "ListRuns", _queries.RunsAsync, cancellationToken);
    }

    /// <summary>Lists sessions, newest first, one page at a time.</summary>
    /// <param name="query">The filters, page size and cursor; <see langword="null"/> lists every session, 25 per page.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The page and the cursor of the next one.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="SessionQuery.Limit"/> is outside 1..1000.</exception>
    /// <exception cref="ArgumentException">The cursor was not returned by this method, or the metadata cannot be stored as JSON.</exception>
    public Task<ResultPage<Session>> ListSessionsAsync(SessionQuery? query = null, CancellationToken cancellationToken = default)
        => ListAsync(query ?? new SessionQuery(), q => q.Limit, "ListSessions", _queries.SessionsAsync, cancellationToken);

    /// <summary>Lists tool executions, newest first, one page at a time.</summary>
    /// <param name="query">The filters, page size and cursor; <see langword="null"/> lists every execution, 25 per page.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The page and the cursor of the next one.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="ToolExecutionQuery.Limit"/> is outside 1..1000.</exception>
    /// <exception cref="ArgumentException">The cursor was not returned by this method, a state is not a <see cref="ToolExecutionState"/>,
    /// the tool name or the metadata contains U+0000, or the metadata cannot be stored as JSON.</exception>
    public Task<ResultPage<ToolExecution>> ListToolExecutionsAsync(ToolExecutionQuery? query = null, CancellationToken cancellationToken = default)
    {
        Internal.Nul.Reject(query?.ToolName, nameof(query), "ToolExecutionQuery.ToolName");
        CheckStates(query?.States, "ToolExecutionQuery.States", nameof(query));
        return ListAsync(query ?? new ToolExecutionQuery(), q => q.Limit, "ListToolExecutions", _queries.ToolExecutionsAsync, cancellationToken);
    }

    /// <summary>Lists compaction events of every session (or of one), newest first, one page at a time.</summary>
    /// <param name="query">The filters, page size and cursor; <see langword="null"/> lists every event, 25 per page.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The page and the cursor of the next one.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><see cref="CompactionEventQuery.Limit"/> is outside 1..1000.</exception>
    /// <exception cref="ArgumentException">The cursor was not returned by this method, or the metadata cannot be stored as JSON.</exception>
    public Task<ResultPage<CompactionEvent>> ListCompactionEventsAsync(CompactionEventQuery? query = null, CancellationToken cancellationToken = default)
        => ListAsync(query ?? new CompactionEventQuery(), q => q.Limit, "ListCompactionEvents", _queries.CompactionEventsAsync, cancellationToken);

    /// <summary>Lists the registered worker instances with their heartbeat age, leadership, tools and in-flight work.</summary>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>Every registered instance, oldest first. An instance that stopped heartbeating stays listed until the leader
    /// removes it (after <see cref="AgentPgOptions.InstanceTtl"/>).</returns>
    public async Task<IReadOnlyList<InstanceInfo>> ListInstancesAsync(CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("ListInstances", null, cancellationToken).ConfigureAwait(false);
        return await _queries.InstancesAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads run counts, the queue and token usage over a recent window, for dashboards.</summary>
    /// <param name="window">How far back to look, up to 31 days (for example one hour or one day).</param>
    /// <param name="bucket">The width of each bucket of <see cref="RunStatistics.Buckets"/>; at least one second and at most
    /// 1 000 buckets per window.</param>
    /// <param name="sessionMetadata">The tenant filter: only runs of sessions whose metadata contains these entries count.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The statistics, by the database clock.</returns>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="window"/> or <paramref name="bucket"/> is out of range.</exception>
    public async Task<RunStatistics> GetRunStatisticsAsync(TimeSpan window, TimeSpan bucket,
        IReadOnlyDictionary<string, object?>? sessionMetadata = null, CancellationToken cancellationToken = default)
    {
        if (window <= TimeSpan.Zero || window > s_maxStatisticsWindow)
        {
            throw new ArgumentOutOfRangeException(nameof(window), window, "The window must be positive and at most 31 days.");
        }

        if (bucket < TimeSpan.FromSeconds(1) || window / bucket > 1000)
        {
            throw new ArgumentOutOfRangeException(nameof(bucket), bucket,
                "The bucket must be at least one second and divide the window into at most 1 000 buckets.");
        }

        await _schemaCheck.EnsureAsync("GetRunStatistics", null, cancellationToken).ConfigureAwait(false);
        return await _queries.StatisticsAsync(window, bucket, sessionMetadata, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Sums the tokens and the cost of model calls, filtered and grouped: what a tenant, an agent, a conversation or
    /// a delegation tree used and cost over a period, and what it would have cost without prompt caching and batches.</summary>
    /// <param name="query">The filters, the grouping and (optionally) the prices.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>One row per group, the total and the models without a price.</returns>
    /// <remarks>Every model call that completed counts, by its completion time (database clock): each iteration of every run,
    /// delegated runs included, whatever its outcome (a failed call that Claude answered was billed), and each compaction's
    /// summary (<see cref="UsageSource.Compaction"/>). The cost prices each call's tokens at its model's <see cref="ModelPrice"/>
    /// (<see cref="UsageQuery.Prices"/>, else <see cref="AgentPgOptions.ModelPrices"/>): cache writes at the price of the lifetime
    /// Claude reported, calls sent through the Message Batches API with <see cref="ModelPrice.BatchDiscount"/>. A group with a
    /// call to a model without a price has no cost; <see cref="UsageReport.UnpricedModels"/> names those models.</remarks>
    /// <exception cref="ArgumentNullException"><paramref name="query"/> is <see langword="null"/>.</exception>
    /// <exception cref="ArgumentException"><see cref="UsageQuery.Until"/> is not after <see cref="UsageQuery.Since"/>; more than two
    /// groupings, or one twice; a price is <see langword="null"/>; the model contains U+0000; or the metadata cannot be stored as JSON.</exception>
    public async Task<UsageReport> GetUsageAsync(UsageQuery query, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(query);
        if (query.Since is { } since && query.Until is { } until && until <= since)
        {
            throw new ArgumentException(
                $"UsageQuery.Until ({until:O}) must be after UsageQuery.Since ({since:O}): the range is [Since, Until).", nameof(query));
        }

        var groups = query.GroupBy ?? [];
        if (groups.Count > 2 || groups.Any(g => g is null) || groups.Distinct().Count() != groups.Count)
        {
            throw new ArgumentException(
                $"UsageQuery.GroupBy takes at most two different groupings (was {string.Join(", ", groups.Select(g => g?.ToString() ?? "null"))}); " +
                "for example [UsageGrouping.Day, UsageGrouping.Model] or [UsageGrouping.SessionMetadata(\"tenant_id\")].", nameof(query));
        }

        if (query.Prices?.FirstOrDefault(p => p.Value is null) is { Key: { } unpricedModel })
        {
            throw new ArgumentException($"UsageQuery.Prices has no price for '{unpricedModel}'; give each model a ModelPrice or leave it out.", nameof(query));
        }

        Internal.Nul.Reject(query.Model, nameof(query), "UsageQuery.Model");
        await _schemaCheck.EnsureAsync("GetUsage", null, cancellationToken).ConfigureAwait(false);
        var prices = query.Prices ?? _options.ModelPrices.AsReadOnly();
        return await Queries.UsageReader.ReadAsync(_dataSource, _sql.Queries, query, prices, cancellationToken).ConfigureAwait(false);
    }

    // Every list: the page size checked, the schema checked, then the query.
    private async Task<ResultPage<T>> ListAsync<TQuery, T>(TQuery query, Func<TQuery, int> limit, string operation,
        Func<TQuery, CancellationToken, Task<ResultPage<T>>> list, CancellationToken cancellationToken)
    {
        CheckLimit(limit(query));
        await _schemaCheck.EnsureAsync(operation, null, cancellationToken).ConfigureAwait(false);
        return await list(query, cancellationToken).ConfigureAwait(false);
    }

    private static void CheckStates<TState>(IReadOnlyList<TState>? states, string field, string paramName)
        where TState : struct, Enum
    {
        foreach (var state in states ?? [])
        {
            if (!Enum.IsDefined(state))
            {
                throw new ArgumentException(
                    $"{field} contains {state}, which is not a {typeof(TState).Name}; use the {typeof(TState).Name} members ({string.Join(", ", Enum.GetNames<TState>())}).",
                    paramName);
            }
        }
    }

    private static void CheckLimit(int limit)
    {
        if (limit is < 1 or > 1000)
        {
            throw new ArgumentOutOfRangeException(nameof(limit), limit, "The page size (Limit) must be 1 to 1000.");
        }
    }
}
