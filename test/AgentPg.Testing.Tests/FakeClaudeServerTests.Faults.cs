using System.Diagnostics;
using System.Net;
using Anthropic;
using Anthropic.Exceptions;
using Anthropic.Models.Messages;

namespace AgentPg.Testing.Tests;

public sealed partial class FakeClaudeServerTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Create_OverloadedThenSuccess_IsRetriedBySdk(bool streaming)
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(
            FakeReply.Error(529, "overloaded_error", "Overloaded", retryAfter: TimeSpan.FromMilliseconds(10)),
            FakeReply.Text("Second time lucky"));

        var message = streaming ? await client.Messages.CreateStreaming(Sdk.Ask("Hi")).Aggregate() : await client.Messages.Create(Sdk.Ask("Hi"));

        Assert.Equal("Second time lucky", Sdk.Text(message));
        Assert.Equal([0, 1], claude.Requests.Select(r => r.RetryCount));
    }

    [Fact]
    public async Task Create_RateLimitedWithRetryAfter_SendsRetryHeadersAndRequestId()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient(o => o with { MaxRetries = 0 });
        claude.Enqueue(FakeReply.Error(429, "rate_limit_error", "Slow down", retryAfter: TimeSpan.FromMilliseconds(1500), shouldRetry: true));

        var error = await Assert.ThrowsAsync<AnthropicRateLimitException>(() => client.Messages.Create(Sdk.Ask("Hi")));

        Assert.Equal("Slow down", error.ApiMessage);
        Assert.Equal(claude.Requests[0].RequestId, error.RequestID);
        Assert.Contains($"\"request_id\":\"{error.RequestID}\"", error.ResponseBody);
        using var http = new HttpClient();
        claude.Enqueue(FakeReply.Error(429, "rate_limit_error", "Slow down", retryAfter: TimeSpan.FromMilliseconds(1500), shouldRetry: false));
        using var request = new HttpRequestMessage(HttpMethod.Post, claude.BaseUrl + "/v1/messages") { Content = new StringContent("""{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}]}""") };
        request.Headers.Add("x-api-key", "k");
        using var response = await http.SendAsync(request);
        Assert.Equal("1500", response.Headers.GetValues("retry-after-ms").Single());
        Assert.Equal("2", response.Headers.GetValues("retry-after").Single());
        Assert.Equal("false", response.Headers.GetValues("x-should-retry").Single());
    }

    [Fact]
    public async Task FailRequests_FailsTheChosenEndpointWithRetryHeadersUntilRemoved()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient(o => o with { MaxRetries = 1 });
        claude.FailRequests(r => r.Method == "POST" && r.Path == "/v1/messages/batches"
            ? new FakeApiError(529, "overloaded_error", "Overloaded") { RetryAfter = TimeSpan.FromMilliseconds(1) }
            : null);
        claude.Respond(_ => FakeReply.Text("answer"));

        var error = await Assert.ThrowsAsync<AnthropicOverloadedException>(() => client.Messages.Batches.Create(Batch(("doc-1", "Summarize A"))));
        var message = await client.Messages.Create(Sdk.Ask("Other endpoints answer"));
        claude.FailRequests(null);
        var created = await client.Messages.Batches.Create(Batch(("doc-1", "Summarize A")));

        Assert.Equal("Overloaded", error.ApiMessage);
        Assert.Equal("answer", Sdk.Text(message));
        Assert.StartsWith("msgbatch_", created.ID, StringComparison.Ordinal);
        Assert.Equal([0, 1], claude.Requests.Where(r => r.Path == "/v1/messages/batches").Take(2).Select(r => r.RetryCount));
        Assert.Equal(3, claude.Requests.Count(r => r.Path == "/v1/messages/batches"));
    }

    [Fact]
    public async Task FailRequests_AStatusThatIsNoError_IsAClearNonRetriedFailure()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.FailRequests(_ => new FakeApiError(200, "api_error", "not an error"));

        var error = await Assert.ThrowsAsync<Anthropic5xxException>(() => client.Messages.Create(Sdk.Ask("Hi")));

        Assert.Contains("FailRequests returned status 200; an error needs a 4xx or 5xx status", error.ApiMessage, StringComparison.Ordinal);
        Assert.Single(claude.Requests);
    }

    [Fact]
    public async Task Create_ShouldRetryFalse_IsNotRetried()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Error(529, "overloaded_error", "Overloaded", shouldRetry: false), FakeReply.Text("never sent"));

        await Assert.ThrowsAsync<AnthropicOverloadedException>(() => client.Messages.Create(Sdk.Ask("Hi")));

        Assert.Single(claude.Requests);
    }

    [Theory]
    [InlineData(400, "invalid_request_error", typeof(AnthropicBadRequestException))]
    [InlineData(401, "authentication_error", typeof(AnthropicUnauthorizedException))]
    [InlineData(402, "billing_error", typeof(AnthropicPaymentRequiredException))]
    [InlineData(403, "permission_error", typeof(AnthropicForbiddenException))]
    [InlineData(404, "not_found_error", typeof(AnthropicNotFoundException))]
    [InlineData(408, "timeout_error", typeof(AnthropicRequestTimeoutException))]
    [InlineData(409, "conflict_error", typeof(AnthropicConflictException))]
    [InlineData(413, "request_too_large", typeof(AnthropicContentTooLargeException))]
    [InlineData(429, "rate_limit_error", typeof(AnthropicRateLimitException))]
    [InlineData(500, "api_error", typeof(Anthropic5xxException))]
    [InlineData(503, "api_error", typeof(AnthropicServiceUnavailableException))]
    [InlineData(504, "timeout_error", typeof(AnthropicGatewayTimeoutException))]
    [InlineData(529, "overloaded_error", typeof(AnthropicOverloadedException))]
    public async Task Create_ScriptedErrorStatus_MapsToTheSdkException(int status, string type, System.Type exceptionType)
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient(o => o with { MaxRetries = 0 });
        claude.Enqueue(FakeReply.Error(status, type, "scripted failure"));

        var error = (AnthropicApiException)await Assert.ThrowsAsync(exceptionType, () => client.Messages.Create(Sdk.Ask("Hi")));

        Assert.Equal(status, (int)error.StatusCode);
        Assert.Equal(type, error.Type!.Raw());
        Assert.Equal("scripted failure", error.ApiMessage);
    }

    [Fact]
    public async Task Create_BodyOverMaxRequestBytes_Is413RequestTooLarge_AndOneUnderItIsAnswered()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { MaxRequestBytes = 10_000 });
        using var client = claude.CreateClient(o => o with { MaxRetries = 0 });
        claude.Enqueue(FakeReply.Text("fits"));

        var error = await Assert.ThrowsAsync<AnthropicContentTooLargeException>(() => client.Messages.Create(Sdk.Ask(new string('x', 12_000))));
        var message = await client.Messages.Create(Sdk.Ask(new string('x', 8_000)));

        Assert.Equal(413, (int)error.StatusCode);
        Assert.Equal("request_too_large", error.Type!.Raw());
        Assert.Equal("fits", Sdk.Text(message));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { MaxRequestBytes = 0 }));
    }

    [Fact]
    public async Task CreateStreaming_ErrorEventMidStream_ThrowsSseExceptionWithoutRetry()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("This answer never finishes") with { StreamFault = FakeStreamFault.Error(afterEvents: 4) });
        var received = new List<RawMessageStreamEvent>();

        var error = await Assert.ThrowsAsync<AnthropicSseException>(async () =>
        {
            await foreach (var e in client.Messages.CreateStreaming(Sdk.Ask("Hi")))
            {
                received.Add(e);
            }
        });

        Assert.Equal("overloaded_error", error.Type!.Raw());
        Assert.Equal("Overloaded", error.ApiMessage);
        Assert.Equal(["message_start", "content_block_start", "content_block_delta"], received.Select(e => e.Type.Raw())); // + the swallowed ping
        Assert.Single(claude.Requests);
    }

    [Fact]
    public async Task CreateStreaming_StreamPause_HoldsTheRestOfTheAnswerUntilReleased()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { StreamChunkSize = 4 });
        using var client = claude.CreateClient();
        var release = new TaskCompletionSource();
        // message_start, content_block_start, ping, then two text deltas; the rest waits.
        claude.Enqueue(FakeReply.Text("Held in the middle, then finished.") with { StreamPause = new FakeStreamPause(5, release.Task) });

        var received = new List<RawMessageStreamEvent>();
        await using var events = client.Messages.CreateStreaming(Sdk.Ask("Hi")).GetAsyncEnumerator();
        for (var i = 0; i < 4; i++)
        {
            Assert.True(await events.MoveNextAsync());
            received.Add(events.Current);
        }

        // Everything before the pause has arrived; the next event cannot have been sent.
        var next = events.MoveNextAsync();
        Assert.False(next.IsCompleted, "an event after the pause arrived before the release");
        release.SetResult();
        Assert.True(await next);
        received.Add(events.Current);
        while (await events.MoveNextAsync())
        {
            received.Add(events.Current);
        }

        Assert.Equal(["message_start", "content_block_start", "content_block_delta", "content_block_delta"], received.Take(4).Select(e => e.Type.Raw()));
        Assert.Equal("message_stop", received[^1].Type.Raw());
        Assert.Equal(9, received.Count(e => e.Type.Raw() == "content_block_delta")); // 34 characters in chunks of 4: nothing lost
    }

    [Fact]
    public async Task CreateStreaming_DroppedConnection_ThrowsIOException()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("This answer is cut off") with { StreamFault = FakeStreamFault.Disconnect(afterEvents: 3) });
        var received = 0;

        var error = await Record.ExceptionAsync(async () =>
        {
            await foreach (var _ in client.Messages.CreateStreaming(Sdk.Ask("Hi")))
            {
                received++;
            }
        });

        Assert.NotNull(error);
        Assert.True(Chain(error).Any(e => e is IOException), $"expected an IOException in the chain, got {error}");
        Assert.Equal(2, received);
        Assert.Single(claude.Requests);
    }

    [Fact]
    public async Task Create_DroppedConnectionWithoutStreaming_ThrowsIOError()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient(o => o with { MaxRetries = 0 });
        claude.Enqueue(FakeReply.Text("lost") with { StreamFault = FakeStreamFault.Disconnect(afterEvents: 0) });

        var error = await Record.ExceptionAsync(() => client.Messages.Create(Sdk.Ask("Hi")));

        Assert.NotNull(error);
        Assert.True(Chain(error).Any(e => e is IOException or HttpRequestException), $"expected an I/O error, got {error}");
    }

    [Fact]
    public async Task CreateStreaming_EndWithoutStop_AggregateRejectsTheStream()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("Cut short") with { StreamFault = FakeStreamFault.EndWithoutStop(afterEvents: 5) });

        await Assert.ThrowsAsync<AnthropicInvalidDataException>(() => client.Messages.CreateStreaming(Sdk.Ask("Hi")).Aggregate());
    }

    [Fact]
    public async Task CreateStreaming_EventDelay_SpacesOutEveryEvent()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Enqueue(FakeReply.Text("slow") with { EventDelay = TimeSpan.FromMilliseconds(20) });
        var arrivals = new List<TimeSpan>();
        var clock = Stopwatch.StartNew();

        await foreach (var _ in client.Messages.CreateStreaming(Sdk.Ask("Hi")))
        {
            arrivals.Add(clock.Elapsed);
        }

        // 7 events on the wire (6 surface: the SDK swallows the ping), each sent after a 20 ms wait.
        Assert.Equal(6, arrivals.Count);
        Assert.True(arrivals[^1] >= TimeSpan.FromMilliseconds(140), $"the stream took {arrivals[^1]}");
    }

    [Fact]
    public async Task Create_DelayBeforeHeaders_TriggersTheClientTimeout()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient(o => o with { MaxRetries = 0, Timeout = TimeSpan.FromMilliseconds(200) });
        // Replies chosen by prompt, not queued: a request the client abandons before the server reads it takes no reply, and the
        // next one would then have been answered 30 s late (seen once in CI).
        claude.Respond(r => r.LastUserText == "Hi, slowly"
            ? FakeReply.Text("too late") with { Delay = TimeSpan.FromSeconds(30) }
            : FakeReply.Text("on time") with { Delay = TimeSpan.FromMilliseconds(20) });

        var error = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.Messages.Create(Sdk.Ask("Hi, slowly")));
        // The next request is sent with the SDK's default timeout: 200 ms would bound the whole exchange (a new connection, the
        // 20 ms latency, the body), which a loaded machine can exceed.
        using var patient = claude.CreateClient(o => o with { MaxRetries = 0 });
        var onTime = await patient.Messages.Create(Sdk.Ask("Hi"));

        Assert.IsType<TimeoutException>(error.InnerException);
        Assert.Equal("on time", Sdk.Text(onTime));
    }

    [Fact]
    public async Task CreateStreaming_ManyConcurrentSlowStreams_AllComplete()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Respond(_ => FakeReply.Text("a slow but steady answer") with { EventDelay = TimeSpan.FromMilliseconds(5) });

        var messages = await Task.WhenAll(Enumerable.Range(0, 100).Select(i => client.Messages.CreateStreaming(Sdk.Ask($"Request {i}")).Aggregate()));

        Assert.All(messages, m => Assert.Equal("a slow but steady answer", Sdk.Text(m)));
        Assert.Equal(100, claude.Requests.Count);
    }

    [Fact]
    public async Task Create_ResponderThrows_Returns500NamingTheException()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient();
        claude.Respond(_ => throw new InvalidOperationException("responder bug"));

        var error = await Assert.ThrowsAsync<Anthropic5xxException>(() => client.Messages.Create(Sdk.Ask("Hi")));

        Assert.Equal(HttpStatusCode.InternalServerError, error.StatusCode);
        Assert.Contains("InvalidOperationException: responder bug", error.ApiMessage);
        Assert.Single(claude.Requests);
    }

    private static IEnumerable<Exception> Chain(Exception? error)
    {
        for (; error is not null; error = error.InnerException)
        {
            yield return error;
        }
    }
}
