using System.Text.Json;
using Microsoft.AspNetCore.Http;

namespace AgentPg.Testing;

public sealed partial class FakeClaudeServer
{
    private static readonly TimeSpan s_disconnectGrace = TimeSpan.FromMilliseconds(50);

    private async Task<ApiFailure?> HandleMessagesAsync(HttpContext context, RecordedRequest request, CancellationToken cancellationToken)
    {
        var failure = RequestValidator.Validate(request.Body!.Value, _limits, request.Betas, countTokens: false, out var parsed);
        if (failure is not null)
        {
            return failure;
        }

        var fakeRequest = ToFakeRequest(parsed!, request.Headers, request.Betas, request.RetryCount, batchCustomId: null);
        var reply = await NextReplyAsync(fakeRequest, cancellationToken).ConfigureAwait(false);
        if (reply is null)
        {
            await WriteErrorAsync(context, request.RequestId, Unscripted($"POST /v1/messages (model '{parsed!.Model}', last user text '{Shorten(fakeRequest.LastUserText)}')"), shouldRetry: false, cancellationToken).ConfigureAwait(false);
            return null;
        }

        if (reply.Delay is { } delay && delay != TimeSpan.Zero)
        {
            await Task.Delay(delay, _timeProvider, cancellationToken).ConfigureAwait(false);
        }

        switch (EffectiveKind(reply))
        {
            case FakeReplyKind.Error:
                var error = reply.ApiError!;
                await WriteErrorAsync(context, request.RequestId, new ApiFailure(error.Status, error.Type, error.Message), error.ShouldRetry, cancellationToken, error.RetryAfter).ConfigureAwait(false);
                return null;
            case FakeReplyKind.Message:
                break;
            default:
                await WriteErrorAsync(context, request.RequestId, new ApiFailure(500, "api_error", $"FakeClaudeServer: FakeReply.{EffectiveKind(reply)} only applies to batch requests, not to POST /v1/messages."), shouldRetry: false, cancellationToken).ConfigureAwait(false);
                return null;
        }

        var message = Render(reply, parsed!);
        if (parsed!.Stream)
        {
            await StreamAsync(context, request.RequestId, reply, message, cancellationToken).ConfigureAwait(false);
            return null;
        }

        switch (reply.StreamFault)
        {
            case { Kind: FakeStreamFaultKind.Disconnect }:
                context.Abort();
                return null;
            case { Kind: FakeStreamFaultKind.Error } fault:
                return new ApiFailure(StatusFor(fault.ErrorType), fault.ErrorType, fault.ErrorMessage);
        }

        await WriteJsonAsync(context, ProtocolWriter.Json(w => ProtocolWriter.WriteMessage(w, message)), cancellationToken).ConfigureAwait(false);
        return null;
    }

    private async Task<ApiFailure?> HandleCountTokensAsync(HttpContext context, RecordedRequest request, CancellationToken cancellationToken)
    {
        var failure = RequestValidator.Validate(request.Body!.Value, _limits, request.Betas, countTokens: true, out var parsed);
        if (failure is not null)
        {
            return failure;
        }

        var json = ProtocolWriter.Json(w =>
        {
            w.WriteStartObject();
            w.WriteNumber("input_tokens", parsed!.Prompt.TotalTokens);
            w.WriteEndObject();
        });
        await WriteJsonAsync(context, json, cancellationToken).ConfigureAwait(false);
        return null;
    }

    private async Task StreamAsync(HttpContext context, string requestId, FakeReply reply, RenderedMessage message, CancellationToken cancellationToken)
    {
        var events = ProtocolWriter.StreamEvents(message, _chunkSize);
        var fault = reply.StreamFault;
        var response = context.Response;
        response.StatusCode = 200;
        response.ContentType = "text/event-stream; charset=utf-8";
        response.Headers.CacheControl = "no-cache";
        await response.StartAsync(cancellationToken).ConfigureAwait(false);

        var sent = 0;
        var pause = reply.StreamPause;
        foreach (var frame in events)
        {
            if (pause is not null && sent == pause.AfterEvents)
            {
                await pause.Until.WaitAsync(cancellationToken).ConfigureAwait(false);
                pause = null;
            }

            if (fault is not null && sent == fault.AfterEvents)
            {
                break;
            }

            if (reply.EventDelay > TimeSpan.Zero)
            {
                await Task.Delay(reply.EventDelay, _timeProvider, cancellationToken).ConfigureAwait(false);
            }

            // PipeWriter.WriteAsync flushes: every event leaves at once.
            await response.BodyWriter.WriteAsync(frame, cancellationToken).ConfigureAwait(false);
            sent++;
        }

        if (pause is not null && sent == events.Count)
        {
            // A count at or beyond the last event: the answer is held before the response ends (not after an earlier fault).
            await pause.Until.WaitAsync(cancellationToken).ConfigureAwait(false);
        }

        switch (fault)
        {
            case { Kind: FakeStreamFaultKind.Disconnect }:
                // Kestrel's Abort discards output still queued for the socket; give the events sent so far a moment
                // (in real time, whatever the configured clock) to reach the client, so the drop happens mid-stream.
                await Task.Delay(s_disconnectGrace, TimeProvider.System, cancellationToken).ConfigureAwait(false);
                context.Abort();
                break;
            case { Kind: FakeStreamFaultKind.Error }:
                if (reply.EventDelay > TimeSpan.Zero)
                {
                    await Task.Delay(reply.EventDelay, _timeProvider, cancellationToken).ConfigureAwait(false);
                }

                await response.BodyWriter.WriteAsync(ProtocolWriter.ErrorEvent(fault.ErrorType, fault.ErrorMessage, requestId), cancellationToken).ConfigureAwait(false);
                break;
        }
    }

    private RenderedMessage Render(FakeReply reply, ParsedMessageRequest request)
    {
        var content = reply.Content
            .Select(block => block is FakeToolUseBlock { Id: null } toolUse ? toolUse with { Id = Ids.ToolUse() } : block)
            .ToList();
        var usage = _promptCache.Apply(request.Model, request.Prompt) with
        {
            Output = TokenEstimator.OutputTokens(content),
            // Claude bills each search and fetch it ran in the answer: its server_tool_use blocks.
            WebSearchRequests = content.Count(b => b is FakeRawBlock { Type: "server_tool_use" } raw && ServerToolName(raw) == "web_search"),
            WebFetchRequests = content.Count(b => b is FakeRawBlock { Type: "server_tool_use" } raw && ServerToolName(raw) == "web_fetch"),
        };
        if (request.Thinking is { } thinking && FakeJson.GetString(thinking, "display") == "omitted")
        {
            // thinking.display "omitted": the blocks come back with empty thinking text and their signatures (billed as
            // the full thinking, counted above), and a stream sends no thinking_delta.
            content = content.Select(block => block is FakeThinkingBlock t ? t with { Thinking = "" } : block).ToList();
        }

        if (reply.Usage is { } explicitUsage)
        {
            usage = usage with
            {
                Input = explicitUsage.InputTokens ?? usage.Input,
                Output = explicitUsage.OutputTokens ?? usage.Output,
                CacheRead = explicitUsage.CacheReadInputTokens ?? usage.CacheRead,
                WebSearchRequests = explicitUsage.WebSearchRequests ?? usage.WebSearchRequests,
                WebFetchRequests = explicitUsage.WebFetchRequests ?? usage.WebFetchRequests,
            };
            if (explicitUsage.CacheCreationInputTokens is { } creation)
            {
                var oneHour = Math.Clamp(explicitUsage.CacheCreation1hInputTokens ?? 0, 0, creation);
                usage = usage with { CacheCreation = creation, Creation5m = creation - oneHour, Creation1h = oneHour };
            }
        }

        return new RenderedMessage(Ids.Message(), reply.Model ?? request.Model, content, reply.StopReason, reply.StopSequence, usage);
    }

    private static string? ServerToolName(FakeRawBlock block) => FakeJson.GetString(block.Json, "name");

    private static FakeRequest ToFakeRequest(ParsedMessageRequest parsed, IReadOnlyDictionary<string, string> headers, IReadOnlyList<string> betas, int? retryCount, string? batchCustomId)
    {
        var turns = parsed.Turns;
        var userIndex = turns.Count - 1;
        while (userIndex >= 0 && turns[userIndex].Role != "user")
        {
            userIndex--;
        }

        var toolResults = new List<FakeToolResult>();
        var lastUserText = "";
        if (userIndex >= 0)
        {
            var user = turns[userIndex];
            lastUserText = user.Text;
            var toolNames = new Dictionary<string, string>(StringComparer.Ordinal);
            if (userIndex > 0)
            {
                foreach (var block in turns[userIndex - 1].Blocks.Where(b => b.Type == "tool_use"))
                {
                    toolNames[FakeJson.GetString(block.Element, "id")!] = FakeJson.GetString(block.Element, "name")!;
                }
            }

            foreach (var block in user.Blocks.Where(b => b.Type == "tool_result"))
            {
                var id = FakeJson.GetString(block.Element, "tool_use_id")!;
                toolResults.Add(new FakeToolResult(id)
                {
                    ToolName = toolNames.GetValueOrDefault(id),
                    Content = ToolResultText(block.Element),
                    Blocks = FakeJson.TryGet(block.Element, "content", out var blocks) && blocks.ValueKind == JsonValueKind.Array
                        ? [.. blocks.EnumerateArray()]
                        : [],
                    IsError = block.Element.TryGetProperty("is_error", out var isError) && isError.ValueKind == JsonValueKind.True,
                    Json = block.Element,
                });
            }
        }

        return new FakeRequest
        {
            Model = parsed.Model,
            Body = parsed.Body,
            Messages = parsed.Body.GetProperty("messages"),
            SystemText = parsed.SystemText,
            Tools = parsed.Tools,
            ToolChoice = parsed.ToolChoice,
            Thinking = parsed.Thinking,
            MaxTokens = parsed.MaxTokens,
            IsStreaming = parsed.Stream,
            BatchCustomId = batchCustomId,
            LastUserText = lastUserText,
            ToolResults = toolResults,
            Headers = headers,
            Betas = betas,
            InputTokens = parsed.Prompt.TotalTokens,
            RetryCount = retryCount,
        };
    }

    private static string ToolResultText(JsonElement block)
    {
        if (!FakeJson.TryGet(block, "content", out var content))
        {
            return "";
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            return content.GetString()!;
        }

        return content.ValueKind == JsonValueKind.Array
            ? string.Join("\n", content.EnumerateArray().Select(b => FakeJson.GetString(b, "text")).OfType<string>())
            : content.GetRawText();
    }

    private static FakeReplyKind EffectiveKind(FakeReply reply) =>
        reply.ApiError is not null && reply.Kind == FakeReplyKind.Message ? FakeReplyKind.Error : reply.Kind;

    private static ApiFailure Unscripted(string what) => new(
        500,
        "api_error",
        $"FakeClaudeServer has no scripted reply for {what}: the reply queue is empty and no responder answered. Call Enqueue(...) or Respond(...) (or UseDemoModel()) before the request is sent.");

    private static string Shorten(string text) => text.Length <= 80 ? text : string.Concat(text.AsSpan(0, 77), "...");

    private static int StatusFor(string errorType) => errorType switch
    {
        "invalid_request_error" => 400,
        "authentication_error" => 401,
        "billing_error" => 402,
        "permission_error" => 403,
        "not_found_error" => 404,
        "timeout_error" => 504,
        "conflict_error" => 409,
        "request_too_large" => 413,
        "rate_limit_error" => 429,
        "overloaded_error" => 529,
        _ => 500,
    };
}
