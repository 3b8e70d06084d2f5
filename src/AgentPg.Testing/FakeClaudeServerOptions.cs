namespace AgentPg.Testing;

/// <summary>
/// Settings for a <see cref="FakeClaudeServer"/>. They are read once by
/// <see cref="FakeClaudeServer.StartAsync(FakeClaudeServerOptions?, CancellationToken)"/>; changing them afterwards has
/// no effect on a running server.
/// </summary>
public sealed class FakeClaudeServerOptions
{
    /// <summary>
    /// The only API key the server accepts, or <see langword="null"/> (the default) to accept any non-empty key.
    /// Clients made by <see cref="FakeClaudeServer.CreateClient"/> use this key, or <c>sk-ant-fake-key</c> when it is null.
    /// </summary>
    public string? ApiKey { get; set; }

    /// <summary>
    /// Answers requests for which nothing was enqueued with <see cref="FakeClaudeServer.Enqueue(FakeReply[])"/>, for example
    /// <see cref="FakeModels.Demo"/>. Return <see langword="null"/> to leave a request unscripted. Default: none.
    /// <see cref="FakeClaudeServer.Respond(Func{FakeRequest, FakeReply?})"/> replaces it at run time.
    /// </summary>
    public Func<FakeRequest, FakeReply?>? Responder { get; set; }

    /// <summary>The context window, in estimated tokens, enforced for every model not listed in
    /// <see cref="ModelContextWindows"/>. Default: 200,000.</summary>
    public int ContextWindow { get; set; } = 200_000;

    /// <summary>The largest body, in bytes, of a Messages or count_tokens request: a larger one is answered 413
    /// <c>request_too_large</c>, as the real API does above its 32 MB (<see cref="MaxBatchRequestBytes"/> for batches). Lower it
    /// to test that path without sending 32 MB. Default: 33,554,432 (32 MB).</summary>
    public long MaxRequestBytes { get; set; } = 32L * 1024 * 1024;

    /// <summary>The largest body, in bytes, of a request that creates a message batch: a larger one is answered 413
    /// <c>request_too_large</c>, as the real Message Batches API does above its 256 MB. Lower it to test that path without
    /// sending 256 MB. Default: 268,435,456 (256 MB).</summary>
    public long MaxBatchRequestBytes { get; set; } = 256L * 1024 * 1024;

    /// <summary>The context window enforced when a request carries <c>anthropic-beta: context-1m-2025-08-07</c>
    /// (never lower than the model's own window). Default: 1,000,000.</summary>
    public int ExtendedContextWindow { get; set; } = 1_000_000;

    /// <summary>Per-model context windows (model id to estimated tokens), for example models with a native 1M window.
    /// Default: empty.</summary>
    public IDictionary<string, int> ModelContextWindows { get; } = new Dictionary<string, int>(StringComparer.Ordinal);

    /// <summary>
    /// The model ids the server knows. When empty (the default) every model is accepted; otherwise any other model is
    /// answered with 404 <c>not_found_error</c> <c>"model: NAME"</c>, as the real API does.
    /// </summary>
    public IList<string> AllowedModels { get; } = new List<string>();

    /// <summary>
    /// How long a batch request takes to process when its reply has no <see cref="FakeReply.Delay"/>; a batch ends when
    /// its slowest request is done. <see cref="Timeout.InfiniteTimeSpan"/> makes batches run until they expire.
    /// Default: 100 ms.
    /// </summary>
    public TimeSpan BatchProcessingDelay { get; set; } = TimeSpan.FromMilliseconds(100);

    /// <summary>How long a batch stays in <c>canceling</c> after a cancel request before it ends. Default: zero (it ends
    /// right after the cancel response, which still reports <c>canceling</c>).</summary>
    public TimeSpan BatchCancelDelay { get; set; } = TimeSpan.Zero;

    /// <summary>How long after creation a batch expires (<c>expires_at</c>); requests not done by then get
    /// <c>expired</c> results. Default: 24 hours, as the real API.</summary>
    public TimeSpan BatchExpiration { get; set; } = TimeSpan.FromHours(24);

    /// <summary>The largest number of characters in one streamed <c>text_delta</c>, <c>thinking_delta</c> or
    /// <c>input_json_delta</c>. Default: 16.</summary>
    public int StreamChunkSize { get; set; } = 16;

    /// <summary>The smallest prefix, in estimated tokens, that a <c>cache_control</c> breakpoint writes to the prompt cache;
    /// shorter prefixes are not cached and report zero cache tokens, as with the real API. Default: 1,024.</summary>
    public int MinimumCacheableTokens { get; set; } = 1024;

    /// <summary>Whether requests are kept in <see cref="FakeClaudeServer.Requests"/>. Turn it off for long benchmarks;
    /// <see cref="FakeClaudeServer.RequestReceived"/> is raised either way. Default: <see langword="true"/>.</summary>
    public bool RecordRequests { get; set; } = true;

    /// <summary>The clock for timestamps, reply delays, stream delays, batch processing and the prompt cache.
    /// Default: <see cref="TimeProvider.System"/>.</summary>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>The TCP port to listen on at 127.0.0.1; 0 (the default) picks a free port.</summary>
    public int Port { get; set; }

    internal void Validate()
    {
        if (ApiKey is { Length: 0 })
        {
            throw new ArgumentException($"{nameof(FakeClaudeServerOptions)}.{nameof(ApiKey)} must be null (accept any key) or non-empty.", nameof(ApiKey));
        }

        RequirePositive(ContextWindow, nameof(ContextWindow));
        RequirePositive(ExtendedContextWindow, nameof(ExtendedContextWindow));
        RequirePositive(StreamChunkSize, nameof(StreamChunkSize));
        if (MaxRequestBytes <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxRequestBytes), MaxRequestBytes, $"{nameof(FakeClaudeServerOptions)}.{nameof(MaxRequestBytes)} must be positive.");
        }

        if (MaxBatchRequestBytes <= 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MaxBatchRequestBytes), MaxBatchRequestBytes,
                $"{nameof(FakeClaudeServerOptions)}.{nameof(MaxBatchRequestBytes)} must be positive.");
        }

        foreach (var (model, window) in ModelContextWindows)
        {
            if (window <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(ModelContextWindows), window, $"{nameof(FakeClaudeServerOptions)}.{nameof(ModelContextWindows)}[\"{model}\"] must be positive.");
            }
        }

        if (MinimumCacheableTokens < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(MinimumCacheableTokens), MinimumCacheableTokens, $"{nameof(FakeClaudeServerOptions)}.{nameof(MinimumCacheableTokens)} must not be negative.");
        }

        RequireDelay(BatchProcessingDelay, nameof(BatchProcessingDelay));
        RequireDelay(BatchCancelDelay, nameof(BatchCancelDelay));
        if (BatchExpiration <= TimeSpan.Zero)
        {
            throw new ArgumentOutOfRangeException(nameof(BatchExpiration), BatchExpiration, $"{nameof(FakeClaudeServerOptions)}.{nameof(BatchExpiration)} must be positive.");
        }

        if (Port is < 0 or > 65535)
        {
            throw new ArgumentOutOfRangeException(nameof(Port), Port, $"{nameof(FakeClaudeServerOptions)}.{nameof(Port)} must be 0 (any free port) or a TCP port number.");
        }

        if (TimeProvider is null)
        {
            throw new ArgumentNullException(nameof(TimeProvider), $"{nameof(FakeClaudeServerOptions)}.{nameof(TimeProvider)} must not be null; use TimeProvider.System.");
        }
    }

    private static void RequirePositive(int value, string name)
    {
        if (value <= 0)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{nameof(FakeClaudeServerOptions)}.{name} must be positive.");
        }
    }

    private static void RequireDelay(TimeSpan value, string name)
    {
        if (value < TimeSpan.Zero && value != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(name, value, $"{nameof(FakeClaudeServerOptions)}.{name} must be zero, positive or Timeout.InfiniteTimeSpan.");
        }
    }
}
