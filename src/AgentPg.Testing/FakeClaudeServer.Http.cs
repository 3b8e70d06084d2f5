using System.Globalization;
using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace AgentPg.Testing;

public sealed partial class FakeClaudeServer
{
    private const string BatchesPath = "/v1/messages/batches";

    private async Task HandleAsync(HttpContext context)
    {
        var requestId = Ids.Request();
        context.Response.Headers["request-id"] = requestId;
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _shutdown.Token);
        var cancellationToken = linked.Token;
        try
        {
            await DispatchAsync(context, requestId, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            context.Abort();
        }
        catch (Exception exception) when (!context.Response.HasStarted)
        {
            // A bug in a responder (or in the fake) must reach the test as a clear, non-retried failure.
            await WriteErrorAsync(
                context,
                requestId,
                new ApiFailure(500, "api_error", $"FakeClaudeServer failed while answering {context.Request.Method} {context.Request.Path}: {exception.GetType().Name}: {exception.Message}"),
                shouldRetry: false,
                CancellationToken.None).ConfigureAwait(false);
        }
    }

    private async Task DispatchAsync(HttpContext context, string requestId, CancellationToken cancellationToken)
    {
        var request = context.Request;
        var method = request.Method.ToUpperInvariant();
        var path = (request.Path.Value ?? "/").TrimEnd('/');
        var limit = path.StartsWith(BatchesPath, StringComparison.Ordinal) ? _maxBatchRequestBytes : _maxRequestBytes;
        var (bytes, tooLarge) = await ReadBodyAsync(request, limit, cancellationToken).ConfigureAwait(false);

        JsonElement? body = null;
        var invalidJson = false;
        if (bytes is { Length: > 0 })
        {
            try
            {
                body = JsonSerializer.Deserialize<JsonElement>(bytes);
            }
            catch (JsonException)
            {
                invalidJson = true;
            }
        }

        var headers = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);
        foreach (var (name, values) in request.Headers)
        {
            headers[name] = values.ToString();
        }

        var query = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (var (name, values) in request.Query)
        {
            query[name] = values.ToString();
        }

        var recorded = new RecordedRequest
        {
            RequestId = requestId,
            Method = method,
            Path = path.Length == 0 ? "/" : path,
            QueryString = request.QueryString.Value ?? "",
            Query = query,
            Headers = headers,
            Body = body,
            RetryCount = headers.TryGetValue("x-stainless-retry-count", out var retry) && int.TryParse(retry, NumberStyles.None, CultureInfo.InvariantCulture, out var count) ? count : null,
            Betas = ParseBetas(headers),
            ReceivedAt = _timeProvider.GetUtcNow(),
        };
        Record(recorded);

        if (Authenticate(headers) is { } authFailure)
        {
            await WriteErrorAsync(context, requestId, authFailure, shouldRetry: null, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (_failRequests?.Invoke(recorded) is { } fault)
        {
            if (fault.Status is < 400 or > 599)
            {
                throw new InvalidOperationException($"FailRequests returned status {fault.Status}; an error needs a 4xx or 5xx status.");
            }

            await WriteErrorAsync(context, requestId, new ApiFailure(fault.Status, fault.Type, fault.Message), fault.ShouldRetry, cancellationToken, fault.RetryAfter)
                .ConfigureAwait(false);
            return;
        }

        if (tooLarge)
        {
            await WriteErrorAsync(context, requestId, new ApiFailure(413, "request_too_large", "Request exceeds the maximum allowed number of bytes."), shouldRetry: null, cancellationToken).ConfigureAwait(false);
            return;
        }

        if (invalidJson || (body is null && method == "POST" && path is "/v1/messages" or "/v1/messages/count_tokens" or BatchesPath))
        {
            await WriteErrorAsync(context, requestId, ApiFailure.Invalid("There was an error parsing the body of your request: it is not valid JSON."), shouldRetry: null, cancellationToken).ConfigureAwait(false);
            return;
        }

        var failure = await RouteAsync(context, recorded, method, path, cancellationToken).ConfigureAwait(false);
        if (failure is not null)
        {
            await WriteErrorAsync(context, requestId, failure, shouldRetry: null, cancellationToken).ConfigureAwait(false);
        }
    }

    private async Task<ApiFailure?> RouteAsync(HttpContext context, RecordedRequest request, string method, string path, CancellationToken cancellationToken)
    {
        switch (method, path)
        {
            case ("POST", "/v1/messages"):
                return await HandleMessagesAsync(context, request, cancellationToken).ConfigureAwait(false);
            case ("POST", "/v1/messages/count_tokens"):
                return await HandleCountTokensAsync(context, request, cancellationToken).ConfigureAwait(false);
            case ("POST", BatchesPath):
                return await HandleCreateBatchAsync(context, request, cancellationToken).ConfigureAwait(false);
            case ("GET", BatchesPath):
                return await HandleListBatchesAsync(context, request, cancellationToken).ConfigureAwait(false);
        }

        if (path.StartsWith(BatchesPath + "/", StringComparison.Ordinal))
        {
            var rest = path[(BatchesPath.Length + 1)..].Split('/');
            switch (method, rest)
            {
                case ("GET", [var id]):
                    return await HandleRetrieveBatchAsync(context, id, cancellationToken).ConfigureAwait(false);
                case ("DELETE", [var id]):
                    return await HandleDeleteBatchAsync(context, id, cancellationToken).ConfigureAwait(false);
                case ("POST", [var id, "cancel"]):
                    return await HandleCancelBatchAsync(context, id, cancellationToken).ConfigureAwait(false);
                case ("GET", [var id, "results"]):
                    return await HandleBatchResultsAsync(context, id, cancellationToken).ConfigureAwait(false);
            }
        }

        return new ApiFailure(404, "not_found_error", "Not Found");
    }

    private ApiFailure? Authenticate(Dictionary<string, string> headers)
    {
        string? key = null;
        if (headers.TryGetValue("x-api-key", out var apiKey) && apiKey.Length > 0)
        {
            key = apiKey;
        }
        else if (headers.TryGetValue("authorization", out var authorization) && authorization.StartsWith("Bearer ", StringComparison.OrdinalIgnoreCase))
        {
            key = authorization["Bearer ".Length..].Trim();
        }

        if (string.IsNullOrEmpty(key))
        {
            return new ApiFailure(401, "authentication_error", "x-api-key header is required");
        }

        return _requiredApiKey is not null && !string.Equals(key, _requiredApiKey, StringComparison.Ordinal)
            ? new ApiFailure(401, "authentication_error", "invalid x-api-key")
            : null;
    }

    private static List<string> ParseBetas(Dictionary<string, string> headers) =>
        headers.TryGetValue("anthropic-beta", out var value)
            ? value.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).ToList()
            : [];

    private static async Task<(byte[]? Bytes, bool TooLarge)> ReadBodyAsync(HttpRequest request, long limit, CancellationToken cancellationToken)
    {
        if (request.ContentLength is > 0 and var length && length > limit)
        {
            return (null, true);
        }

        using var buffer = new MemoryStream(request.ContentLength is > 0 and var capacity ? (int)capacity : 0);
        var chunk = new byte[16 * 1024];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, cancellationToken).ConfigureAwait(false)) > 0)
        {
            if (buffer.Length + read > limit)
            {
                return (null, true);
            }

            buffer.Write(chunk, 0, read);
        }

        return (buffer.ToArray(), false);
    }

    private static async Task WriteErrorAsync(HttpContext context, string requestId, ApiFailure failure, bool? shouldRetry, CancellationToken cancellationToken, TimeSpan? retryAfter = null)
    {
        var response = context.Response;
        response.StatusCode = failure.Status;
        response.ContentType = "application/json";
        if (shouldRetry is { } retry)
        {
            response.Headers["x-should-retry"] = retry ? "true" : "false";
        }

        if (retryAfter is { } delay)
        {
            response.Headers["retry-after-ms"] = delay.TotalMilliseconds.ToString("0.###", CultureInfo.InvariantCulture);
            response.Headers["retry-after"] = Math.Ceiling(delay.TotalSeconds).ToString(CultureInfo.InvariantCulture);
        }

        var body = ProtocolWriter.ErrorBody(failure.Type, failure.Message, requestId);
        response.ContentLength = body.Length;
        await response.Body.WriteAsync(body, cancellationToken).ConfigureAwait(false);
    }

    private static async Task WriteJsonAsync(HttpContext context, byte[] json, CancellationToken cancellationToken)
    {
        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json";
        context.Response.ContentLength = json.Length;
        await context.Response.Body.WriteAsync(json, cancellationToken).ConfigureAwait(false);
    }
}
