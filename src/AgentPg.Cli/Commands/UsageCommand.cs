using System.CommandLine;
using System.Globalization;
using System.Text.Json;

namespace AgentPg.Cli.Commands;

/// <summary><c>agentpg usage</c>: tokens and cost of model calls over a period, grouped (<see cref="AgentPgClient.GetUsageAsync"/>).</summary>
internal static class UsageCommand
{
    /// <summary>The environment variable naming the prices file when --prices is not given.</summary>
    public const string PricesVariable = "AGENTPG_PRICES";

    public static Command Create(CliGlobals globals)
    {
        var since = new Option<string?>("--since") { Description = "Calls completed since: a duration back from now (90s, 15m, 2h, 30d) or a timestamp. Default: 30d." };
        var until = new Option<string?>("--until") { Description = "Calls completed before: a duration back from now or a timestamp. Default: now." };
        var groupBy = new Option<string[]>("--group-by")
        {
            Description = "Group by day, agent, model, mode, source or metadata:KEY (for example metadata:tenant_id); at most two, repeat or separate with commas.",
            AllowMultipleArgumentsPerToken = true,
        };
        var tenant = new Option<string[]>("--tenant")
        {
            Description = "Only sessions whose metadata has KEY=VALUE (the tenant filter, as the admin UI's); repeat for several entries.",
        };
        var agent = new Option<string?>("--agent") { Description = "Only the calls of this agent's runs (name or id)." };
        var model = new Option<string?>("--model") { Description = "Only calls to this model." };
        var session = new Option<Guid?>("--session") { Description = "Only the calls of this session." };
        var run = new Option<Guid?>("--run") { Description = "Only the calls of this run and the runs it delegated to (its delegation tree)." };
        var prices = new Option<string?>("--prices")
        {
            Description = $"A JSON file of prices in US dollars per million tokens: {{\"MODEL\": {{\"input\": 3, \"output\": 15, \"cacheWrite5m\": 3.75, \"cacheWrite1h\": 6, \"cacheRead\": 0.3, \"batchDiscount\": 0.5}}}} (batchDiscount optional). Default: the file {PricesVariable} names; without prices, tokens only.",
        };
        var command = new Command("usage", "Tokens and cost of model calls over a period, by day, agent, model, mode, source or a session metadata key.")
        {
            since, until, groupBy, tenant, agent, model, session, run, prices,
        };
        globals.SetAction(command, async (parsed, context, cancellationToken) =>
        {
            var groups = (parsed.GetValue(groupBy) ?? [])
                .SelectMany(g => g.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                .Select(g => Parse(g))
                .ToList();
            var pricesFile = parsed.GetValue(prices) ?? (Environment.GetEnvironmentVariable(PricesVariable) is { Length: > 0 } file ? file : null);
            var query = new UsageQuery
            {
                Since = Format.Since(parsed.GetValue(since) ?? "30d", CliContext.Time),
                Until = parsed.GetValue(until) is { } untilText ? Format.Since(untilText, CliContext.Time, "--until") : null,
                GroupBy = groups,
                SessionMetadata = Tenant(parsed.GetValue(tenant)),
                AgentId = parsed.GetValue(agent) is { } agentText ? await RunsCommands.ResolveAgentAsync(context, agentText, cancellationToken).ConfigureAwait(false) : null,
                Model = parsed.GetValue(model),
                SessionId = parsed.GetValue(session),
                RootRunId = parsed.GetValue(run),
                Prices = pricesFile is null ? null : await ReadPricesAsync(pricesFile, cancellationToken).ConfigureAwait(false),
            };
            var report = await context.Client.GetUsageAsync(query, cancellationToken).ConfigureAwait(false);
            if (context.Json)
            {
                context.WriteJson(report);
                return CliExitCodes.Success;
            }

            var period = $"{Format.Time(report.Since)} → {(report.Until is { } end ? Format.Time(end) : "now")}";
            if (report.Total.ModelCalls == 0)
            {
                context.WriteLine($"No model calls completed {period}.");
                return CliExitCodes.Success;
            }

            // Server tools billed per use get a column when the calls used any.
            var serverTools = report.Total.WebSearchRequests + report.Total.WebFetchRequests > 0;
            var columns = groups.Select(g => g.ToString())
                .Concat(["Calls", "Batched", "Runs", "Input", "Output", "Cache write (1h)", "Cache read"])
                .Concat(serverTools ? ["Web searches (fetches)"] : [])
                .Concat(["Cost", "Without discounts"]).ToArray();
            var table = CliContext.Table(columns);
            foreach (var row in report.Rows.Append(report.Total))
            {
                var keys = groups.Select(g => ReferenceEquals(row, report.Total) && groups.IndexOf(g) == 0 ? "total" : ReferenceEquals(row, report.Total) ? "" : Key(row, g));
                CliContext.AddRow(table, [.. keys, Number(row.ModelCalls), Number(row.BatchModelCalls), Number(row.Runs), Number(row.InputTokens),
                    Number(row.OutputTokens), $"{Number(row.CacheCreationInputTokens)} ({Number(row.CacheCreation1hInputTokens)})", Number(row.CacheReadInputTokens),
                    .. serverTools ? [$"{Number(row.WebSearchRequests)} ({Number(row.WebFetchRequests)})"] : Array.Empty<string>(),
                    Money(row.Cost), Money(row.CostWithoutDiscounts)]);
            }

            context.Write(table);
            context.WriteLine($"Model calls completed {period}, by the database clock.");
            if (query.Prices is null)
            {
                context.WriteLine($"No prices: give --prices FILE (or set {PricesVariable}) for the cost.");
            }
            else if (report.UnpricedModels.Count > 0)
            {
                context.WriteLine($"No price for {string.Join(", ", report.UnpricedModels.Select(m => m.Length == 0 ? "(unknown model)" : m))}: their groups have no cost.");
            }

            return CliExitCodes.Success;
        });
        return command;
    }

    private static UsageGrouping Parse(string text)
    {
        try
        {
            return UsageGrouping.Parse(text);
        }
        catch (ArgumentException ex)
        {
            throw CliException.Usage($"--group-by: {CliException.MessageOf(ex)}");
        }
    }

    private static Dictionary<string, object?>? Tenant(string[]? entries)
    {
        if (entries is null || entries.Length == 0)
        {
            return null;
        }

        var metadata = new Dictionary<string, object?>(StringComparer.Ordinal);
        foreach (var entry in entries)
        {
            var equals = entry.IndexOf('=', StringComparison.Ordinal);
            if (equals <= 0)
            {
                throw CliException.Usage($"--tenant: '{entry}' is not KEY=VALUE (for example --tenant tenant_id=acme).");
            }

            metadata[entry[..equals]] = entry[(equals + 1)..];
        }

        return metadata;
    }

    private static string Key(UsageRow row, UsageGrouping grouping) => grouping.Kind switch
    {
        UsageGroupKind.Day => row.Day?.ToString("yyyy-MM-dd", CultureInfo.InvariantCulture) ?? "",
        UsageGroupKind.Agent => row.AgentId is null ? "(compactions)" : row.AgentName ?? row.AgentId.ToString()!,
        UsageGroupKind.Model => row.Model ?? "(unknown)",
        UsageGroupKind.RunMode => row.Mode is { } mode ? Format.Name(mode) : "(compactions)",
        UsageGroupKind.Source => row.Source == UsageSource.Compaction ? "compaction" : "run",
        _ => row.SessionMetadata.GetValueOrDefault(grouping.MetadataKey!) ?? "(none)",
    };

    private static string Number(long value) => value.ToString("N0", CultureInfo.InvariantCulture);

    private static string Money(decimal? value) => value is { } v ? "$" + v.ToString("0.0000", CultureInfo.InvariantCulture) : "—";

    /// <summary>Reads a prices file: an object of model names, each an object of prices per million tokens.</summary>
    internal static async Task<Dictionary<string, ModelPrice>> ReadPricesAsync(string path, CancellationToken cancellationToken)
    {
        string text;
        try
        {
            text = await File.ReadAllTextAsync(path, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw CliException.Usage($"--prices: cannot read '{path}': {ex.Message}");
        }

        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(text);
        }
        catch (JsonException ex)
        {
            throw CliException.Usage($"--prices: '{path}' is not JSON: {ex.Message}");
        }

        using (document)
        {
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw CliException.Usage($"--prices: '{path}' must hold an object of models, for example {{\"claude-sonnet-4-5\": {{\"input\": 3, …}}}}.");
            }

            var prices = new Dictionary<string, ModelPrice>(StringComparer.Ordinal);
            foreach (var model in document.RootElement.EnumerateObject())
            {
                decimal Price(string name, decimal? fallback = null)
                {
                    if (model.Value.ValueKind == JsonValueKind.Object && model.Value.TryGetProperty(name, out var value)
                        && value.ValueKind == JsonValueKind.Number && value.TryGetDecimal(out var price))
                    {
                        return price;
                    }

                    return fallback ?? throw CliException.Usage(
                        $"--prices: '{path}': the model '{model.Name}' needs a number \"{name}\" (US dollars per million tokens); each model has input, output, cacheWrite5m, cacheWrite1h and cacheRead (and optionally batchDiscount and webSearchPerThousand).");
                }

                try
                {
                    prices[model.Name] = new ModelPrice(Price("input"), Price("output"), Price("cacheWrite5m"), Price("cacheWrite1h"), Price("cacheRead"))
                    {
                        BatchDiscount = Price("batchDiscount", 0.5m),
                        WebSearchPerThousand = Price("webSearchPerThousand", 10m),
                    };
                }
                catch (ArgumentOutOfRangeException ex)
                {
                    throw CliException.Usage($"--prices: '{path}': the model '{model.Name}': {CliException.MessageOf(ex)}");
                }
            }

            return prices;
        }
    }
}
