using AgentPg.Internal;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Queries;

/// <summary>Runs the read-side statements of <see cref="QuerySql"/>: each list fetches one row more than the page to know
/// whether another page follows, and builds its cursor from the last row shown.</summary>
internal sealed class QueryReader(NpgsqlDataSource dataSource, QuerySql sql)
{
    public Task<ResultPage<Run>> RunsAsync(RunQuery query, CancellationToken cancellationToken)
    {
        var tenant = Tenant(query.SessionMetadata, nameof(query.SessionMetadata));
        return PageAsync(sql.RunsCommand(dataSource, query, tenant, Cursor(query.Cursor)), query.Limit, RunSql.Read, r => (r.CreatedAt, r.Id), cancellationToken);
    }

    public Task<ResultPage<Session>> SessionsAsync(SessionQuery query, CancellationToken cancellationToken)
    {
        var tenant = Tenant(query.Metadata, nameof(query.Metadata));
        return PageAsync(sql.SessionsCommand(dataSource, query, tenant, Cursor(query.Cursor)), query.Limit, SessionSql.Read, s => (s.CreatedAt, s.Id),
            cancellationToken);
    }

    public Task<ResultPage<ToolExecution>> ToolExecutionsAsync(ToolExecutionQuery query, CancellationToken cancellationToken)
    {
        var tenant = Tenant(query.SessionMetadata, nameof(query.SessionMetadata));
        return PageAsync(sql.ToolExecutionsCommand(dataSource, query, tenant, Cursor(query.Cursor)), query.Limit, ToolExecutionSql.Read,
            e => (e.CreatedAt, e.Id), cancellationToken);
    }

    public Task<ResultPage<CompactionEvent>> CompactionEventsAsync(CompactionEventQuery query, CancellationToken cancellationToken)
    {
        var tenant = Tenant(query.SessionMetadata, nameof(query.SessionMetadata));
        return PageAsync(sql.CompactionEventsCommand(dataSource, query, tenant, Cursor(query.Cursor)), query.Limit, CompactionSql.ReadEvent,
            e => (e.CreatedAt, e.Id), cancellationToken);
    }

    public async Task<IReadOnlyList<InstanceInfo>> InstancesAsync(CancellationToken cancellationToken)
        => await sql.InstancesAsync(dataSource, cancellationToken).ConfigureAwait(false);

    public async Task<RunStatistics> StatisticsAsync(TimeSpan window, TimeSpan bucket, IReadOnlyDictionary<string, object?>? tenantFilter,
        CancellationToken cancellationToken)
    {
        var tenant = Tenant(tenantFilter, "sessionMetadata");
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            sql.AddStatistics(batch, window, bucket, tenant);

            var byState = new Dictionary<RunState, int>();
            var queue = new List<QueueDepth>();
            var rows = new List<(DateTimeOffset Start, RunState State, int Count, Usage Usage)>();
            DateTimeOffset since, until;
            var reader = await batch.ExecuteReaderAsync(dataSource, prepare: false, cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                (since, until) = QuerySql.ReadWindow(reader);
                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    queue.Add(QuerySql.ReadQueueDepth(reader));
                }

                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    rows.Add(QuerySql.ReadBucketState(reader));
                }
            }

            foreach (var row in rows)
            {
                byState[row.State] = byState.GetValueOrDefault(row.State) + row.Count;
            }

            // Every bucket from the one holding the window's start to the one holding its end, empty ones with zeros.
            var buckets = new List<RunStatisticsBucket>();
            var origin = new DateTimeOffset(2000, 1, 1, 0, 0, 0, TimeSpan.Zero);
            var start = origin + (bucket * Math.Floor((since - origin) / bucket));
            for (; start <= until; start += bucket)
            {
                var inBucket = rows.Where(r => r.Start == start).ToList();
                int Count(RunState state) => inBucket.Where(r => r.State == state).Sum(r => r.Count);
                buckets.Add(new RunStatisticsBucket
                {
                    Start = start,
                    Completed = Count(RunState.Completed),
                    Failed = Count(RunState.Failed),
                    Cancelled = Count(RunState.Cancelled),
                    Usage = new Usage
                    {
                        InputTokens = inBucket.Sum(r => r.Usage.InputTokens),
                        OutputTokens = inBucket.Sum(r => r.Usage.OutputTokens),
                        CacheCreationInputTokens = inBucket.Sum(r => r.Usage.CacheCreationInputTokens),
                        CacheReadInputTokens = inBucket.Sum(r => r.Usage.CacheReadInputTokens),
                    },
                });
            }

            return new RunStatistics { Since = since, Until = until, CreatedByState = byState, Queue = queue, Buckets = buckets };
        }
    }

    private static string? Tenant(IReadOnlyDictionary<string, object?>? metadata, string parameterName)
        => metadata is null ? null : JsonMapping.ToJsonObject(metadata, parameterName);

    private static (DateTimeOffset CreatedAt, Guid Id)? Cursor(string? cursor) => PageCursor.Decode(cursor, "Cursor");

    // Runs a page's command (one row more than the page) and builds the next page's cursor from the last row shown.
    private static async Task<ResultPage<T>> PageAsync<T>(NpgsqlCommand command, int limit, Func<NpgsqlDataReader, T> read,
        Func<T, (DateTimeOffset CreatedAt, Guid Id)> key, CancellationToken cancellationToken)
    {
        var rows = await command.QueryListAsync(read, cancellationToken).ConfigureAwait(false);
        if (rows.Count <= limit)
        {
            return new ResultPage<T>(rows, null);
        }

        rows.RemoveAt(rows.Count - 1);
        var (createdAt, id) = key(rows[^1]);
        return new ResultPage<T>(rows, PageCursor.Encode(createdAt, id));
    }
}
