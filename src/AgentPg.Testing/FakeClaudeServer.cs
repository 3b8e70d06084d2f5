using System.Collections.Concurrent;
using System.Net;
using Anthropic;
using Anthropic.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;

namespace AgentPg.Testing;

/// <summary>
/// A real HTTP server on 127.0.0.1 that speaks Claude's Messages API (JSON and SSE streaming), token counting and the
/// Message Batches API, answering with scripted replies, so that the official <c>Anthropic</c> SDK (or any other client)
/// can be tested without reaching the real service.
/// </summary>
/// <remarks>
/// <para>
/// A request is answered by the first of: the queue of <see cref="Enqueue(FakeReply[])"/> replies (first in, first out),
/// then the responder (<see cref="Respond(Func{FakeRequest, FakeReply?})"/>,
/// <see cref="FakeClaudeServerOptions.Responder"/>, <see cref="UseDemoModel"/>). When neither gives a reply, the server
/// answers HTTP 500 <c>api_error</c> with <c>x-should-retry: false</c> and a message saying nothing was scripted.
/// Requests are validated first, as the real API does; a rejected request consumes no reply.
/// </para>
/// <para>
/// Batch requests take their replies from the same queue and responder, in request order, when the batch is created
/// (so the order is deterministic); they are then reported as processed once their <see cref="FakeReply.Delay"/>
/// (default <see cref="FakeClaudeServerOptions.BatchProcessingDelay"/>) has passed.
/// </para>
/// <para>All members are thread-safe. Dispose the server with <c>await using</c>.</para>
/// </remarks>
public sealed partial class FakeClaudeServer : IAsyncDisposable
{
    private const string DefaultApiKey = "sk-ant-fake-key";

    private readonly WebApplication _app;
    private readonly TimeProvider _timeProvider;
    private readonly string? _requiredApiKey;
    private readonly ModelLimits _limits;
    private readonly int _chunkSize;
    private readonly long _maxRequestBytes;
    private readonly long _maxBatchRequestBytes;
    private readonly bool _recordRequests;
    private readonly PromptCache _promptCache;
    private readonly BatchStore _batches;
    private readonly ConcurrentQueue<FakeReply> _replies = new();
    private readonly ConcurrentQueue<RecordedRequest> _requests = new();
    private readonly ConcurrentDictionary<RequestWaiter, byte> _waiters = new();
    private readonly CancellationTokenSource _shutdown = new();
    private volatile Func<FakeRequest, CancellationToken, Task<FakeReply?>>? _responder;
    private volatile Func<RecordedRequest, FakeApiError?>? _failRequests;
    private int _disposed;

    private FakeClaudeServer(WebApplication app, FakeClaudeServerOptions options)
    {
        _app = app;
        _timeProvider = options.TimeProvider;
        _requiredApiKey = options.ApiKey;
        ApiKey = options.ApiKey ?? DefaultApiKey;
        _limits = new ModelLimits(
            options.ContextWindow,
            options.ExtendedContextWindow,
            new Dictionary<string, int>(options.ModelContextWindows, StringComparer.Ordinal),
            new HashSet<string>(options.AllowedModels, StringComparer.Ordinal));
        _chunkSize = options.StreamChunkSize;
        _maxRequestBytes = options.MaxRequestBytes;
        _maxBatchRequestBytes = options.MaxBatchRequestBytes;
        _recordRequests = options.RecordRequests;
        _promptCache = new PromptCache(options.TimeProvider, options.MinimumCacheableTokens);
        _batches = new BatchStore(options.TimeProvider, options.BatchProcessingDelay, options.BatchCancelDelay, options.BatchExpiration);
        if (options.Responder is { } responder)
        {
            Respond(responder);
        }
    }

    /// <summary>
    /// Raised synchronously, on the request's thread, as soon as a request has been read and recorded (before it is
    /// authenticated, validated or answered). Keep handlers fast; an exception thrown by a handler fails that request
    /// with HTTP 500.
    /// </summary>
    public event EventHandler<RecordedRequest>? RequestReceived;

    /// <summary>The server's base URL, for example <c>http://127.0.0.1:41234</c>; pass it as the SDK's <c>BaseUrl</c>.</summary>
    public string BaseUrl { get; private set; } = "";

    /// <summary>The API key that <see cref="CreateClient"/> uses: <see cref="FakeClaudeServerOptions.ApiKey"/>, or
    /// <c>sk-ant-fake-key</c> when the server accepts any key.</summary>
    public string ApiKey { get; }

    /// <summary>Every request received so far, in arrival order (empty when
    /// <see cref="FakeClaudeServerOptions.RecordRequests"/> is off).</summary>
    public IReadOnlyList<RecordedRequest> Requests => _requests.ToArray();

    /// <summary>How many enqueued replies have not been used yet.</summary>
    public int PendingReplyCount => _replies.Count;

    /// <summary>Starts a server on 127.0.0.1 (a free port unless <see cref="FakeClaudeServerOptions.Port"/> is set).</summary>
    /// <param name="options">The settings; <see langword="null"/> uses the defaults.</param>
    /// <param name="cancellationToken">Cancels the start.</param>
    /// <returns>The running server; dispose it to stop it.</returns>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public static async Task<FakeClaudeServer> StartAsync(FakeClaudeServerOptions? options = null, CancellationToken cancellationToken = default)
    {
        options ??= new FakeClaudeServerOptions();
        options.Validate();

        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Limits.MaxRequestBodySize = null;
            kestrel.Limits.MinRequestBodyDataRate = null;
            kestrel.Limits.MinResponseDataRate = null;
            kestrel.Limits.MaxConcurrentConnections = null;
            kestrel.Limits.MaxConcurrentUpgradedConnections = null;
            kestrel.Listen(IPAddress.Loopback, options.Port, listen => listen.Protocols = HttpProtocols.Http1);
        });
        var app = builder.Build();
        var server = new FakeClaudeServer(app, options);
        app.Run(server.HandleAsync);
        try
        {
            await app.StartAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            await app.DisposeAsync().ConfigureAwait(false);
            server._shutdown.Dispose();
            throw;
        }

        var address = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        server.BaseUrl = address.TrimEnd('/');
        return server;
    }

    /// <summary>Creates an SDK client for this server: its <see cref="BaseUrl"/> and <see cref="ApiKey"/>, SDK defaults
    /// for everything else (2 retries, computed timeouts).</summary>
    /// <param name="configure">Adjusts the options, for example <c>o =&gt; o with { MaxRetries = 0 }</c>.</param>
    /// <returns>A new client; dispose it when done.</returns>
    public AnthropicClient CreateClient(Func<ClientOptions, ClientOptions>? configure = null)
    {
        var options = new ClientOptions { ApiKey = ApiKey, BaseUrl = BaseUrl };
        return new AnthropicClient(configure is null ? options : configure(options));
    }

    /// <summary>Adds replies to the end of the queue; each request takes the first one.</summary>
    /// <param name="replies">The replies, in the order they will be used.</param>
    public void Enqueue(params FakeReply[] replies)
    {
        ArgumentNullException.ThrowIfNull(replies);
        foreach (var reply in replies)
        {
            ArgumentNullException.ThrowIfNull(reply, nameof(replies));
            _replies.Enqueue(reply);
        }
    }

    /// <summary>Sets the function that answers requests when the queue is empty; it replaces any earlier responder.</summary>
    /// <param name="responder">Returns the reply for a request, or <see langword="null"/> to leave it unscripted.</param>
    public void Respond(Func<FakeRequest, FakeReply?> responder)
    {
        ArgumentNullException.ThrowIfNull(responder);
        _responder = (request, _) => Task.FromResult(responder(request));
    }

    /// <summary>Sets an asynchronous responder, which can wait (for example on a signal from the test) before it answers.</summary>
    /// <param name="responder">Returns the reply for a request, or <see langword="null"/> to leave it unscripted. The token
    /// fires when the client goes away or the server stops.</param>
    public void Respond(Func<FakeRequest, CancellationToken, Task<FakeReply?>> responder)
    {
        ArgumentNullException.ThrowIfNull(responder);
        _responder = responder;
    }

    /// <summary>Fails requests to any endpoint (creating or polling a message batch, counting tokens, listing models…) with
    /// an HTTP error, before the server handles them: for outages and rate limits on endpoints that take no
    /// <see cref="FakeReply"/>. A Messages call is better scripted with <see cref="FakeReply.Error(int, string, string, TimeSpan?, bool?)"/>.</summary>
    /// <param name="fault">Returns the error for a request (recorded and authenticated by then), or <see langword="null"/> to
    /// handle it normally; <see langword="null"/> removes the fault.</param>
    /// <example><code>claude.FailRequests(r =&gt; r.Path == "/v1/messages/batches" &amp;&amp; r.Method == "POST"
    ///     ? new FakeApiError(529, "overloaded_error", "Overloaded") { RetryAfter = TimeSpan.FromMilliseconds(1) }
    ///     : null);</code></example>
    public void FailRequests(Func<RecordedRequest, FakeApiError?>? fault) => _failRequests = fault;

    /// <summary>Answers with the built-in deterministic demo model (<see cref="FakeModels.Demo"/>) when the queue is empty.</summary>
    public void UseDemoModel() => Respond(FakeModels.Demo);

    /// <summary>Forgets the requests recorded so far.</summary>
    public void ClearRequests() => _requests.Clear();

    /// <summary>Makes a message batch unknown to the server whatever its state, as if it had been deleted or belonged to
    /// another API key or workspace: from now on retrieving it, its results or cancelling it answers 404
    /// <c>not_found_error</c>.</summary>
    /// <param name="batchId">The batch id (<c>msgbatch_…</c>).</param>
    /// <returns><see langword="true"/> when the batch existed.</returns>
    public bool ForgetBatch(string batchId)
    {
        ArgumentNullException.ThrowIfNull(batchId);
        if (_batches.Find(batchId) is not { } batch)
        {
            return false;
        }

        _batches.Remove(batch);
        return true;
    }

    /// <summary>
    /// Waits for the first request, already received or still to come, that matches <paramref name="predicate"/>.
    /// </summary>
    /// <param name="predicate">The condition; <see langword="null"/> matches any request.</param>
    /// <param name="timeout">How long to wait, in real time; default 10 seconds.</param>
    /// <param name="cancellationToken">Cancels the wait.</param>
    /// <returns>The matching request.</returns>
    /// <exception cref="TimeoutException">No matching request arrived in time; the message lists what did arrive.</exception>
    public async Task<RecordedRequest> WaitForRequestAsync(Func<RecordedRequest, bool>? predicate = null, TimeSpan? timeout = null, CancellationToken cancellationToken = default)
    {
        predicate ??= static _ => true;
        var limit = timeout ?? TimeSpan.FromSeconds(10);
        var waiter = new RequestWaiter(predicate);
        _waiters.TryAdd(waiter, 0);
        try
        {
            // Registered first, then scanned: a request either is in the snapshot or notifies this waiter.
            foreach (var request in _requests)
            {
                if (predicate(request))
                {
                    waiter.Completion.TrySetResult(request);
                    break;
                }
            }

            return await waiter.Completion.Task.WaitAsync(limit, TimeProvider.System, cancellationToken).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            var seen = string.Join(", ", _requests.Select(r => $"{r.Method} {r.Path}"));
            throw new TimeoutException($"No matching request reached the FakeClaudeServer within {limit}. Received so far: [{seen}].");
        }
        finally
        {
            _waiters.TryRemove(waiter, out _);
        }
    }

    /// <summary>Stops the server: in-flight requests are aborted and pending waits fail.</summary>
    /// <returns>A task that completes when the server has stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _shutdown.CancelAsync().ConfigureAwait(false);
        using (var stopTimeout = new CancellationTokenSource(TimeSpan.FromSeconds(5)))
        {
            await _app.StopAsync(stopTimeout.Token).ConfigureAwait(false);
        }

        await _app.DisposeAsync().ConfigureAwait(false);
        foreach (var waiter in _waiters.Keys)
        {
            waiter.Completion.TrySetException(new ObjectDisposedException(nameof(FakeClaudeServer), "The FakeClaudeServer was disposed while a test was waiting for a request."));
        }

        _shutdown.Dispose();
    }

    private void Record(RecordedRequest request)
    {
        if (_recordRequests)
        {
            _requests.Enqueue(request);
        }

        // Enumerating the dictionary itself takes no lock (unlike .Keys), which keeps the hot path lock-free.
        foreach (var (waiter, _) in _waiters)
        {
            if (!waiter.Completion.Task.IsCompleted && waiter.Predicate(request))
            {
                waiter.Completion.TrySetResult(request);
            }
        }

        RequestReceived?.Invoke(this, request);
    }

    private async Task<FakeReply?> NextReplyAsync(FakeRequest request, CancellationToken cancellationToken)
    {
        if (_replies.TryDequeue(out var reply))
        {
            return reply;
        }

        return _responder is { } responder ? await responder(request, cancellationToken).ConfigureAwait(false) : null;
    }

    private sealed class RequestWaiter(Func<RecordedRequest, bool> predicate)
    {
        public Func<RecordedRequest, bool> Predicate { get; } = predicate;

        public TaskCompletionSource<RecordedRequest> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
