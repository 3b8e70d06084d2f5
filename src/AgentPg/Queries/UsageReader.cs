using System.Globalization;
using AgentPg.Internal;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Queries;

/// <summary>Runs <see cref="QuerySql.Usage"/> and prices what it sums: the statement groups by model and by whether the calls
/// were batched within each group, the cost of each part is its tokens at its model's price, and a group's cost is the sum of
/// its parts (or <see langword="null"/> when one part's model has no price).</summary>
internal static class UsageReader
{
    public static async Task<UsageReport> ReadAsync(NpgsqlDataSource dataSource, QuerySql sql, UsageQuery query,
        IReadOnlyDictionary<string, ModelPrice> prices, CancellationToken cancellationToken)
    {
        var tenant = query.SessionMetadata is null ? null : JsonMapping.ToJsonObject(query.SessionMetadata, nameof(query.SessionMetadata));
        var groups = query.GroupBy ?? [];
        var keys = groups.Select(g => (Kind: SqlKind(g.Kind), g.MetadataKey)).ToList();
        var rows = await sql.UsageAsync(dataSource, query, tenant, keys, cancellationToken).ConfigureAwait(false);

        var unpriced = new SortedSet<string>(StringComparer.Ordinal);
        // The cost of each group (and of the total, keyed (null, null) among the rows without keys) from its priced parts.
        var costs = new Dictionary<(bool Keyed, string? Key1, string? Key2), (decimal? Cost, decimal? WithoutDiscounts)>();
        foreach (var part in rows.Where(r => r.Detailed))
        {
            var id = (part.Keyed, part.Keyed ? part.Key1 : null, part.Keyed ? part.Key2 : null);
            var (cost, withoutDiscounts) = costs.TryGetValue(id, out var sum) ? sum : (0m, 0m);
            if (part.Model is { } model && prices.TryGetValue(model, out var price))
            {
                var (billed, list) = Price(part, price);
                costs[id] = (cost + billed, withoutDiscounts + list);
            }
            else
            {
                unpriced.Add(part.Model ?? "");
                costs[id] = (null, null);
            }
        }

        UsageRow Row(QuerySql.UsageSqlRow r)
        {
            var (cost, withoutDiscounts) = costs.TryGetValue((r.Keyed, r.Keyed ? r.Key1 : null, r.Keyed ? r.Key2 : null), out var c) ? c : (0m, 0m);
            var row = new UsageRow
            {
                InputTokens = r.Input,
                OutputTokens = r.Output,
                CacheCreationInputTokens = r.CacheWrite,
                CacheCreation1hInputTokens = r.CacheWrite1h,
                CacheReadInputTokens = r.CacheRead,
                WebSearchRequests = r.WebSearches,
                WebFetchRequests = r.WebFetches,
                ModelCalls = r.Calls,
                BatchModelCalls = r.BatchCalls,
                Runs = r.Runs,
                Cost = cost,
                CostWithoutDiscounts = withoutDiscounts,
            };
            if (!r.Keyed)
            {
                return row;
            }

            var metadata = new Dictionary<string, string?>(StringComparer.Ordinal);
            for (var i = 0; i < groups.Count; i++)
            {
                var value = i == 0 ? r.Key1 : r.Key2;
                row = groups[i].Kind switch
                {
                    UsageGroupKind.Day => row with { Day = value is null ? null : DateOnly.ParseExact(value, "yyyy-MM-dd", CultureInfo.InvariantCulture) },
                    UsageGroupKind.Agent => row with { AgentId = value is null ? null : Guid.Parse(value), AgentName = value is null ? null : r.AgentName },
                    UsageGroupKind.Model => row with { Model = value },
                    UsageGroupKind.RunMode => row with { Mode = value is null ? null : DbEnums.ParseRunMode(value) },
                    UsageGroupKind.Source => row with { Source = value == "compaction" ? UsageSource.Compaction : UsageSource.Run },
                    _ => row,
                };
                if (groups[i].Kind == UsageGroupKind.SessionMetadata)
                {
                    metadata[groups[i].MetadataKey!] = value;
                }
            }

            return row with { SessionMetadata = metadata };
        }

        var keyed = rows.Where(r => r.Keyed && !r.Detailed && (groups.Count > 0 || r.Calls > 0))
            .OrderBy(r => r.Key1 is null).ThenBy(r => r.Key1, StringComparer.Ordinal)
            .ThenBy(r => r.Key2 is null).ThenBy(r => r.Key2, StringComparer.Ordinal)
            .Select(Row)
            .ToList();
        var total = rows.Single(r => !r.Keyed && !r.Detailed);
        return new UsageReport
        {
            Since = query.Since,
            Until = query.Until,
            GroupBy = groups,
            Rows = groups.Count == 0 && total.Calls == 0 ? [] : keyed,
            Total = Row(total),
            UnpricedModels = [.. unpriced],
        };
    }

    // The tokens and web searches of one part (one model, batched or not) at its price: as billed, and without caching or batching.
    private static (decimal Billed, decimal List) Price(QuerySql.UsageSqlRow part, ModelPrice price)
    {
        const decimal million = 1_000_000m;
        var billed = (part.Input * price.InputPerMillionTokens
                      + part.Output * price.OutputPerMillionTokens
                      + (part.CacheWrite - part.CacheWrite1h) * price.CacheWrite5mPerMillionTokens
                      + part.CacheWrite1h * price.CacheWrite1hPerMillionTokens
                      + part.CacheRead * price.CacheReadPerMillionTokens) / million;
        if (part.Batch)
        {
            billed *= 1m - price.BatchDiscount;
        }

        // Web searches are billed per use, batched or not; web fetches only through the tokens of what was fetched.
        var searches = part.WebSearches * price.WebSearchPerThousand / 1000m;
        var list = ((part.Input + part.CacheWrite + part.CacheRead) * price.InputPerMillionTokens + part.Output * price.OutputPerMillionTokens) / million;
        return (billed + searches, list + searches);
    }

    private static string SqlKind(UsageGroupKind kind) => kind switch
    {
        UsageGroupKind.Day => "day",
        UsageGroupKind.Agent => "agent",
        UsageGroupKind.Model => "model",
        UsageGroupKind.RunMode => "mode",
        UsageGroupKind.Source => "source",
        _ => "metadata",
    };
}
