using System.Text.Json;
using AgentPg.Runs;
using Anthropic.Models.Messages.Batches;

namespace AgentPg.Claude;

/// <summary>The Message Batches calls the engine makes, one request per batch (see <see cref="Workers.BatchRunWorker"/>).</summary>
internal sealed class BatchApi(Engine engine)
{
    private static readonly IReadOnlyDictionary<string, JsonElement> s_none = new Dictionary<string, JsonElement>();

    private Anthropic.IAnthropicClient Claude => engine.Claude ?? throw new InvalidOperationException("The client is not started.");

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

    public Task CancelAsync(string batchId, CancellationToken cancellationToken)
        => Claude.Messages.Batches.Cancel(batchId, new BatchCancelParams(), cancellationToken);

    public static string CustomId(Guid iterationId) => iterationId.ToString("D");
}
