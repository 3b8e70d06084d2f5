using System.Text.Json;
using AgentPg.Diagnostics;
using AgentPg.Runs;
using Anthropic.Exceptions;
using Anthropic.Models.Messages.Batches;
using Npgsql;

namespace AgentPg.Claude;

/// <summary>The Message Batches calls the engine makes, one request per batch (see <see cref="Workers.BatchRunWorker"/>).</summary>
internal sealed class BatchApi(Engine engine)
{
    private static readonly IReadOnlyDictionary<string, JsonElement> s_none = new Dictionary<string, JsonElement>();

    private Anthropic.IAnthropicClient Claude => engine.Claude
        ?? throw new InvalidOperationException("No Claude API key: set AgentPgOptions.ApiKey or the ANTHROPIC_API_KEY environment variable.");

    /// <summary>Creates a batch holding the iteration's request; its custom_id is the iteration id.</summary>
    public async Task<(string Id, DateTimeOffset ExpiresAt)> CreateAsync(Guid iterationId, Dictionary<string, JsonElement> body,
        IReadOnlyDictionary<string, JsonElement> headers, CancellationToken cancellationToken)
    {
        var request = new Dictionary<string, JsonElement>
        {
            ["custom_id"] = JsonSerializer.SerializeToElement(CustomId(iterationId)),
            ["params"] = JsonSerializer.SerializeToElement(body),
        };
        var parameters = BatchCreateParams.FromRawUnchecked(headers, s_none,
            new Dictionary<string, JsonElement> { ["requests"] = JsonSerializer.SerializeToElement(new[] { request }) });
        var batch = await Claude.Messages.Batches.Create(parameters, cancellationToken).ConfigureAwait(false);
        return (batch.ID, batch.ExpiresAt);
    }

    public Task<MessageBatch> RetrieveAsync(string batchId, CancellationToken cancellationToken)
        => Claude.Messages.Batches.Retrieve(batchId, new BatchRetrieveParams(), cancellationToken);

    /// <summary>The result line of the iteration's request (its "result" object), or null when the download has none.</summary>
    public async Task<JsonElement?> FindResultAsync(string batchId, Guid iterationId, CancellationToken cancellationToken)
    {
        var customId = CustomId(iterationId);
        await foreach (var line in Claude.Messages.Batches.ResultsStreaming(batchId, new BatchResultsParams(), cancellationToken).ConfigureAwait(false))
        {
            if (line.CustomID == customId && line.RawData.TryGetValue("result", out var result))
            {
                return result.Clone();
            }
        }

        return null;
    }

    /// <summary>The one way the engine cancels batches at the API: each batch once, one request each. A failure is logged and
    /// goes no further: a batch whose run ended stays <c>canceling</c> in the database until a started instance's batch
    /// poller cancels it (<see cref="Workers.BatchPoller"/>), and a batch no iteration references simply runs out.</summary>
    /// <param name="batchIds">The batches to cancel (repeats are cancelled once).</param>
    /// <param name="take">Whether to take each batch first, as the poller does, and cancel only those taken: a run's cancel
    /// leaves its batches <c>canceling</c>, and the poller may take them meanwhile (then it sends the cancel, not this). A
    /// cancel the API refused is put back for the poller to try once more. The poller and a batch never recorded pass
    /// <see langword="false"/>.</param>
    /// <param name="cancellationToken">Stops cancelling (the worker stops); an HTTP timeout is a failure like any other.</param>
    public async Task CancelQuietlyAsync(IEnumerable<string> batchIds, bool take, CancellationToken cancellationToken)
    {
        IReadOnlyList<string> ids = [.. batchIds.Distinct(StringComparer.Ordinal)];
        if (take)
        {
            try
            {
                ids = await engine.Sql.Iterations.TakeBatchesAsync(engine.DataSource, ids, cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or ObjectDisposedException
                                       || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                // Still canceling in the database: the poller takes them.
                foreach (var batchId in ids)
                {
                    Log.BatchCancelFailed(engine.Logger, ex, batchId);
                }

                return;
            }
        }

        foreach (var batchId in ids)
        {
            try
            {
                await Claude.Messages.Batches.Cancel(batchId, new BatchCancelParams(), cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is AnthropicException or HttpRequestException or IOException or InvalidOperationException or ObjectDisposedException
                                       || (ex is OperationCanceledException && !cancellationToken.IsCancellationRequested))
            {
                // (A client stopped meanwhile surfaces as ObjectDisposedException or InvalidOperationException.)
                Log.BatchCancelFailed(engine.Logger, ex, batchId);
                if (take)
                {
                    await ReopenQuietlyAsync(batchId).ConfigureAwait(false);
                }
            }
        }
    }

    /// <summary><see cref="CancelQuietlyAsync"/> in the background, taking each batch, for callers that must not wait for the
    /// API (a run's cancel, a run created with <see cref="ConcurrencyPolicy.Interrupt"/>), after their commit.</summary>
    public void CancelInBackground(IReadOnlyCollection<string> batchIds)
    {
        if (batchIds.Count > 0)
        {
            _ = Task.Run(() => CancelQuietlyAsync(batchIds, take: true, CancellationToken.None));
        }
    }

    private async Task ReopenQuietlyAsync(string batchId)
    {
        try
        {
            await engine.Sql.Iterations.ReopenBatchesAsync(engine.DataSource, [batchId], CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or ObjectDisposedException)
        {
            // Marked ended: the batch runs out at Claude, as one the poller failed to cancel does.
            Log.BatchCancelFailed(engine.Logger, ex, batchId);
        }
    }

    public static string CustomId(Guid iterationId) => iterationId.ToString("D");
}
