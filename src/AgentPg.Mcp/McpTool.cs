using System.Net;
using System.Text.Json;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace AgentPg.Mcp;

/// <summary>One tool of an MCP server, registered as an AgentPg tool.</summary>
/// <remarks>Its input schema is the server's complete JSON Schema (<see cref="ToolSchema.FromJsonSchema"/>): Claude
/// receives it unchanged and AgentPg validates the model's input against it before <see cref="ExecuteContentAsync"/>.</remarks>
internal sealed class McpTool : IContentTool
{
    private static readonly TimeSpan s_rateLimitSnooze = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan s_minRateLimitSnooze = TimeSpan.FromSeconds(1);
    private static readonly TimeSpan s_maxRateLimitSnooze = TimeSpan.FromHours(1);

    public McpTool(McpToolSource source, Tool tool, string name)
    {
        Source = source;
        ServerToolName = tool.Name;
        Name = name;
        Description = tool.Description ?? tool.Title ?? "";
        InputSchema = ToolSchema.FromJsonSchema(tool.InputSchema);
    }

    public McpToolSource Source { get; }

    /// <summary>Gets the tool's name on the server.</summary>
    public string ServerToolName { get; }

    public string Name { get; }

    public string Description { get; }

    public ToolSchema InputSchema { get; }

    public async Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var session = Source.CurrentSession;
        if (session is null)
        {
            throw Source.Unreachable(Name, "is not connected");
        }

        var arguments = new Dictionary<string, object?>(StringComparer.Ordinal);
        if (input.ValueKind == JsonValueKind.Object)
        {
            foreach (var property in input.EnumerateObject())
            {
                arguments[property.Name] = property.Value;
            }
        }

        CallToolResult result;
        var rateLimit = RateLimitCapture.Begin();
        try
        {
            // The token carries the run's cancellation and AgentPgOptions.ToolTimeout: the SDK sends
            // notifications/cancelled to the server when it fires.
            result = await session.CallToolAsync(ServerToolName, arguments, progress: null, options: null, cancellationToken).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception ex) when (ex is not (ToolSnoozeException or ToolCancelException or ToolDiscardException))
        {
            throw Map(session, ex, rateLimit);
        }

        // isError (a tool execution error): Claude gets an is_error tool_result with the server's content and can correct
        // itself; not retried.
        return McpContent.ToResult(result, ServerToolName);
    }

    /// <summary>Maps a failed call to AgentPg's tool semantics by exception type and status, never by message text.</summary>
    private Exception Map(McpClient session, Exception ex, RateLimitCapture rateLimit)
    {
        if (FindInChain<HttpRequestException>(ex) is { StatusCode: { } status } http)
        {
            switch (status)
            {
                case HttpStatusCode.Unauthorized or HttpStatusCode.Forbidden:
                    return new ToolCancelException($"MCP server '{Source.Name}' refused tool '{Name}' ({(int)status} {status}): check its credentials", http);
                case HttpStatusCode.TooManyRequests:
                    var wait = RateLimitSnooze(rateLimit.RetryAfter);
                    return new ToolSnoozeException(wait, $"MCP server '{Source.Name}' rate limited tool '{Name}' ({(int)status}); trying again in {wait.TotalSeconds:0} s");
                case HttpStatusCode.NotFound:
                    // Streamable HTTP: the server no longer knows the session (it restarted); a new session is needed.
                    Source.ConnectionLost(session);
                    return Source.Unreachable(Name, $"lost the session ({(int)status})");
                case >= HttpStatusCode.InternalServerError:
                    return new InvalidOperationException($"MCP tool '{ServerToolName}' on server '{Source.Name}' failed: HTTP {(int)status} {status}", ex);
            }
        }

        if (FindInChain<McpProtocolException>(ex) is { } protocol)
        {
            return protocol.ErrorCode == McpErrorCode.InvalidParams
                ? new ToolDiscardException($"MCP tool '{ServerToolName}' refused its input: {protocol.Message}", protocol)
                : new InvalidOperationException($"MCP tool '{ServerToolName}' on server '{Source.Name}' failed ({protocol.ErrorCode}): {protocol.Message}", protocol);
        }

        if (FindInChain<HttpRequestException>(ex) is { StatusCode: null, HttpRequestError: HttpRequestError.NameResolutionError
                or HttpRequestError.ConnectionError or HttpRequestError.SecureConnectionError })
        {
            // No connection to the server, so the call never reached it: wait for the reconnection without using an attempt.
            Source.ConnectionLost(session);
            return Source.Unreachable(Name, "could not be reached");
        }

        if (session.Completion.IsCompleted || FindInChain<ClientTransportClosedException>(ex) is not null
            || FindInChain<IOException>(ex) is not null || FindInChain<ObjectDisposedException>(ex) is not null
            || FindInChain<HttpRequestException>(ex) is { StatusCode: null })
        {
            // Lost while the call was under way: the server may have done its work (a stdio server that dies on this input
            // dies again on the next attempt). A failed attempt like any tool's exception, retried per
            // AgentPgOptions.ToolRetry and then reported to Claude; a snooze would call it again after every reconnection.
            Source.ConnectionLost(session);
            return new InvalidOperationException(
                $"MCP server '{Source.Name}': connection lost during the call of tool '{ServerToolName}' (the server may have run it); reconnecting", ex);
        }

        return new InvalidOperationException($"MCP tool '{ServerToolName}' on server '{Source.Name}' failed: {ex.Message}", ex);
    }

    /// <summary>How long to wait after a 429: the server's <c>Retry-After</c> (seconds, or a date), kept between 1 second and
    /// 1 hour; 30 seconds without one.</summary>
    private TimeSpan RateLimitSnooze(System.Net.Http.Headers.RetryConditionHeaderValue? retryAfter)
    {
        var wait = retryAfter switch
        {
            { Delta: { } delta } => delta,
            { Date: { } date } => date - Source.Time.GetUtcNow(),
            _ => s_rateLimitSnooze,
        };
        return wait < s_minRateLimitSnooze ? s_minRateLimitSnooze : wait > s_maxRateLimitSnooze ? s_maxRateLimitSnooze : wait;
    }

    private static T? FindInChain<T>(Exception ex)
        where T : Exception
    {
        for (Exception? e = ex; e is not null; e = e.InnerException)
        {
            if (e is T match)
            {
                return match;
            }

            if (e is AggregateException { InnerExceptions.Count: > 0 } aggregate)
            {
                foreach (var inner in aggregate.InnerExceptions)
                {
                    if (FindInChain<T>(inner) is { } found)
                    {
                        return found;
                    }
                }
            }
        }

        return null;
    }
}
