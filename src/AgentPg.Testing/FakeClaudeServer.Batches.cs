using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace AgentPg.Testing;

public sealed partial class FakeClaudeServer
{
    private const int MaxBatchRequests = 100_000;

    private async Task<ApiFailure?> HandleCreateBatchAsync(HttpContext context, RecordedRequest request, CancellationToken cancellationToken)
    {
        var body = request.Body!.Value;
        if (body.ValueKind != JsonValueKind.Object)
        {
            return ApiFailure.Invalid("The request body must be a JSON object.");
        }

        if (!FakeJson.TryGet(body, "requests", out var requests))
        {
            return ApiFailure.Invalid("requests: Field required");
        }

        if (requests.ValueKind != JsonValueKind.Array)
        {
            return ApiFailure.Invalid("requests: Input should be a valid list");
        }

        var count = requests.GetArrayLength();
        if (count == 0)
        {
            return ApiFailure.Invalid("requests: List should have at least 1 item after validation, not 0");
        }

        if (count > MaxBatchRequests)
        {
            return ApiFailure.Invalid(string.Create(CultureInfo.InvariantCulture, $"requests: List should have at most {MaxBatchRequests} items after validation, not {count}"));
        }

        var customIds = new HashSet<string>(StringComparer.Ordinal);
        var index = 0;
        foreach (var item in requests.EnumerateArray())
        {
            if (FakeJson.GetString(item, "custom_id") is not { } customId)
            {
                return ApiFailure.Invalid($"requests.{index}.custom_id: Field required");
            }

            if (!RequestValidator.NamePattern().IsMatch(customId))
            {
                return ApiFailure.Invalid($"requests.{index}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'");
            }

            if (!customIds.Add(customId))
            {
                return ApiFailure.Invalid($"requests.{index}.custom_id: custom_id '{customId}' is used more than once; custom_id values must be unique within a batch");
            }

            if (!FakeJson.TryGet(item, "params", out var parameters) || parameters.ValueKind != JsonValueKind.Object)
            {
                return ApiFailure.Invalid($"requests.{index}.params: Field required");
            }

            index++;
        }

        // Replies are taken now, in request order, so a scripted queue maps onto the requests deterministically.
        var createdAt = _batches.Now;
        var entries = new List<BatchEntry>(count);
        foreach (var item in requests.EnumerateArray())
        {
            var customId = FakeJson.GetString(item, "custom_id")!;
            var parameters = item.GetProperty("params");
            var failure = RequestValidator.Validate(parameters, _limits, request.Betas, countTokens: false, out var parsed);
            if (failure is not null)
            {
                entries.Add(new BatchEntry(customId, FakeReplyKind.Error, ErroredLine(customId, failure.Type, failure.Message), _batches.ProcessingDelay));
                continue;
            }

            var fakeRequest = ToFakeRequest(parsed!, request.Headers, request.Betas, request.RetryCount, customId);
            var reply = await NextReplyAsync(fakeRequest, cancellationToken).ConfigureAwait(false);
            if (reply is null)
            {
                var unscripted = Unscripted($"batch request '{customId}' (model '{parsed!.Model}', last user text '{Shorten(fakeRequest.LastUserText)}')");
                entries.Add(new BatchEntry(customId, FakeReplyKind.Error, ErroredLine(customId, unscripted.Type, unscripted.Message), _batches.ProcessingDelay));
                continue;
            }

            var kind = EffectiveKind(reply);
            var line = kind switch
            {
                FakeReplyKind.Message => SucceededLine(customId, Render(reply, parsed!)),
                FakeReplyKind.Error => ErroredLine(customId, reply.ApiError!.Type, reply.ApiError.Message),
                FakeReplyKind.Canceled or FakeReplyKind.Expired => OutcomeLine(customId, kind),
                _ => null,
            };
            entries.Add(new BatchEntry(customId, kind, line, reply.Delay ?? _batches.ProcessingDelay));
        }

        var batch = _batches.Add(entries, createdAt);
        await WriteBatchAsync(context, batch.Peek(), cancellationToken).ConfigureAwait(false);
        return null;
    }

    private async Task<ApiFailure?> HandleRetrieveBatchAsync(HttpContext context, string id, CancellationToken cancellationToken)
    {
        if (_batches.Find(id) is not { } batch)
        {
            return BatchNotFound(id);
        }

        await WriteBatchAsync(context, batch.Observe(_batches.Now, _batches.CancelDelay), cancellationToken).ConfigureAwait(false);
        return null;
    }

    private async Task<ApiFailure?> HandleCancelBatchAsync(HttpContext context, string id, CancellationToken cancellationToken)
    {
        if (_batches.Find(id) is not { } batch)
        {
            return BatchNotFound(id);
        }

        await WriteBatchAsync(context, batch.Cancel(_batches.Now, _batches.CancelDelay), cancellationToken).ConfigureAwait(false);
        return null;
    }

    private async Task<ApiFailure?> HandleDeleteBatchAsync(HttpContext context, string id, CancellationToken cancellationToken)
    {
        if (_batches.Find(id) is not { } batch)
        {
            return BatchNotFound(id);
        }

        if (batch.Observe(_batches.Now, _batches.CancelDelay).Status != "ended")
        {
            return ApiFailure.Invalid($"Message batch {id} cannot be deleted while it is still processing; cancel it and wait until its processing_status is \"ended\".");
        }

        _batches.Remove(batch);
        var json = ProtocolWriter.Json(w =>
        {
            w.WriteStartObject();
            w.WriteString("id", id);
            w.WriteString("type", "message_batch_deleted");
            w.WriteEndObject();
        });
        await WriteJsonAsync(context, json, cancellationToken).ConfigureAwait(false);
        return null;
    }

    private async Task<ApiFailure?> HandleBatchResultsAsync(HttpContext context, string id, CancellationToken cancellationToken)
    {
        if (_batches.Find(id) is not { } batch)
        {
            return BatchNotFound(id);
        }

        var snapshot = batch.Observe(_batches.Now, _batches.CancelDelay);
        if (snapshot.FinalKinds is not { } finalKinds)
        {
            return ApiFailure.Invalid($"Message batch {id} is still processing; results are available once its processing_status is \"ended\".");
        }

        using var buffer = new MemoryStream();
        for (var i = 0; i < snapshot.Entries.Count; i++)
        {
            var entry = snapshot.Entries[i];
            var line = finalKinds[i] == entry.Kind ? entry.ResultLine : OutcomeLine(entry.CustomId, finalKinds[i]);
            if (line is null)
            {
                continue;
            }

            buffer.Write(line);
            buffer.WriteByte((byte)'\n');
        }

        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/x-jsonl";
        context.Response.ContentLength = buffer.Length;
        await context.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), cancellationToken).ConfigureAwait(false);
        return null;
    }

    private async Task<ApiFailure?> HandleListBatchesAsync(HttpContext context, RecordedRequest request, CancellationToken cancellationToken)
    {
        var limit = 20;
        if (request.Query.TryGetValue("limit", out var limitText))
        {
            if (!int.TryParse(limitText, NumberStyles.Integer, CultureInfo.InvariantCulture, out limit))
            {
                return ApiFailure.Invalid("limit: Input should be a valid integer");
            }

            if (limit is < 1 or > 1000)
            {
                return ApiFailure.Invalid(limit < 1 ? "limit: Input should be greater than or equal to 1" : "limit: Input should be less than or equal to 1000");
            }
        }

        var all = _batches.NewestFirst();
        List<FakeBatch> page;
        bool hasMore;
        if (request.Query.TryGetValue("after_id", out var afterId))
        {
            var rest = all.SkipWhile(b => b.Id != afterId).Skip(1).ToList();
            page = rest.Take(limit).ToList();
            hasMore = rest.Count > limit;
        }
        else if (request.Query.TryGetValue("before_id", out var beforeId))
        {
            var earlier = all.TakeWhile(b => b.Id != beforeId).ToList();
            if (earlier.Count == all.Count)
            {
                earlier.Clear();
            }

            page = earlier.Skip(Math.Max(0, earlier.Count - limit)).ToList();
            hasMore = earlier.Count > limit;
        }
        else
        {
            page = all.Take(limit).ToList();
            hasMore = all.Count > limit;
        }

        var now = _batches.Now;
        var snapshots = page.Select(b => b.Observe(now, _batches.CancelDelay)).ToList();
        var json = ProtocolWriter.Json(w =>
        {
            w.WriteStartObject();
            w.WriteStartArray("data");
            foreach (var snapshot in snapshots)
            {
                BatchStore.WriteBatch(w, snapshot, BaseUrl);
            }

            w.WriteEndArray();
            w.WriteBoolean("has_more", hasMore);
            WriteNullableString(w, "first_id", snapshots.Count > 0 ? snapshots[0].Id : null);
            WriteNullableString(w, "last_id", snapshots.Count > 0 ? snapshots[^1].Id : null);
            w.WriteEndObject();
        });
        await WriteJsonAsync(context, json, cancellationToken).ConfigureAwait(false);
        return null;
    }

    private Task WriteBatchAsync(HttpContext context, BatchSnapshot snapshot, CancellationToken cancellationToken) =>
        WriteJsonAsync(context, ProtocolWriter.Json(w => BatchStore.WriteBatch(w, snapshot, BaseUrl)), cancellationToken);

    private static ApiFailure BatchNotFound(string id) => new(404, "not_found_error", $"Message batch {id} not found.");

    private static byte[] SucceededLine(string customId, RenderedMessage message) => ProtocolWriter.Json(w =>
    {
        w.WriteStartObject();
        w.WriteString("custom_id", customId);
        w.WriteStartObject("result");
        w.WriteString("type", "succeeded");
        w.WritePropertyName("message");
        ProtocolWriter.WriteMessage(w, message);
        w.WriteEndObject();
        w.WriteEndObject();
    });

    private static byte[] ErroredLine(string customId, string type, string message) => ProtocolWriter.Json(w =>
    {
        w.WriteStartObject();
        w.WriteString("custom_id", customId);
        w.WriteStartObject("result");
        w.WriteString("type", "errored");
        w.WritePropertyName("error");
        ProtocolWriter.WriteError(w, type, message, requestId: null);
        w.WriteEndObject();
        w.WriteEndObject();
    });

    private static byte[] OutcomeLine(string customId, FakeReplyKind kind) => ProtocolWriter.Json(w =>
    {
        w.WriteStartObject();
        w.WriteString("custom_id", customId);
        w.WriteStartObject("result");
        w.WriteString("type", kind == FakeReplyKind.Expired ? "expired" : "canceled");
        w.WriteEndObject();
        w.WriteEndObject();
    });

    private static void WriteNullableString(Utf8JsonWriter writer, string name, string? value)
    {
        if (value is null)
        {
            writer.WriteNull(name);
        }
        else
        {
            writer.WriteString(name, value);
        }
    }
}
