using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Compaction;

/// <summary>How a client reacts when Claude's count_tokens fails: a session too large for the endpoint is estimated while every
/// other session is still counted; an endpoint that refuses the client is not asked again; an unreachable one is asked again
/// after a pause.</summary>
public sealed class TokenCountingTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task ASessionOverTheCountingEndpointsSizeLimit_IsEstimated_AndOtherSessionsAreStillCounted()
    {
        await using var h = await Harness.StartAsync(db);
        var large = await OneTurnAsync(h, new string('x', 300_000));
        var small = await OneTurnAsync(h, "hello");

        // A second fake that refuses bodies over 200 kB, as the real endpoint refuses those over 32 MB (413 request_too_large).
        await using var counting = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { MaxRequestBytes = 200_000 });
        var logs = new LogCapture();
        var client = await h.AddClientAsync(o =>
        {
            o.BaseUrl = counting.BaseUrl;
            o.ApiKey = counting.ApiKey;
            o.LoggerFactory = logs;
        }, start: false);

        var largeStats = await client.GetCompactionStatsAsync(large);
        var smallStats = await client.GetCompactionStatsAsync(small);
        var again = await client.GetCompactionStatsAsync(small);

        Assert.True(largeStats.TotalTokens > 70_000, $"the large session is estimated: {largeStats.TotalTokens} tokens");
        var requests = counting.Requests.Where(r => r.Path == "/v1/messages/count_tokens").ToList();
        Assert.Equal(3, requests.Count);
        Assert.Null(requests[0].Body); // refused as too large
        Assert.NotNull(requests[1].Body);
        Assert.NotNull(requests[2].Body);
        Assert.Equal(smallStats.TotalTokens, again.TotalTokens);
        Assert.Single(logs.WithEventId(8106));
        Assert.Empty(logs.WithEventId(8102));
        Assert.Empty(logs.WithEventId(8105));
    }

    [DatabaseFact]
    public async Task AnEndpointThatRefusesTheClient_IsNotAskedAgain()
    {
        await using var h = await Harness.StartAsync(db);
        var session = await OneTurnAsync(h, "hello");
        // A fake that requires another key: count_tokens answers 401 authentication_error.
        await using var counting = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { ApiKey = "sk-ant-the-right-one" });
        var logs = new LogCapture();
        var client = await h.AddClientAsync(o =>
        {
            o.BaseUrl = counting.BaseUrl;
            o.ApiKey = "sk-ant-revoked";
            o.LoggerFactory = logs;
        }, start: false);

        var first = await client.GetCompactionStatsAsync(session);
        var second = await client.GetCompactionStatsAsync(session);

        Assert.Single(counting.Requests, r => r.Path == "/v1/messages/count_tokens");
        Assert.Equal(first.TotalTokens, second.TotalTokens);
        Assert.Single(logs.WithEventId(8102));
    }

    [DatabaseFact]
    public async Task AnUnreachableEndpoint_IsAskedAgainAfterFiveMinutes()
    {
        await using var h = await Harness.StartAsync(db);
        var session = await OneTurnAsync(h, "hello");

        // An address where nothing listens any more: every attempt is a connection failure.
        var gone = await FakeClaudeServer.StartAsync();
        var deadUrl = gone.BaseUrl;
        await gone.DisposeAsync();
        var logs = new LogCapture();
        var clock = new SteppedClock();
        var client = await h.AddClientAsync(o =>
        {
            o.BaseUrl = deadUrl;
            o.LoggerFactory = logs;
            o.TimeProvider = clock;
        }, start: false);

        await client.GetCompactionStatsAsync(session);
        Assert.Single(logs.WithEventId(8105));

        await client.GetCompactionStatsAsync(session); // within the pause: estimated without trying
        Assert.Single(logs.WithEventId(8105));

        clock.Step(TimeSpan.FromMinutes(5) + TimeSpan.FromSeconds(1));
        await client.GetCompactionStatsAsync(session);
        Assert.Equal(2, logs.WithEventId(8105).Count);
        Assert.Empty(logs.WithEventId(8102));
    }

    /// <summary>A session with one turn: <paramref name="prompt"/> and Claude's "noted".</summary>
    private static async Task<Guid> OneTurnAsync(Harness h, string prompt)
    {
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        h.Claude.Respond(_ => FakeReply.Text("noted"));
        await h.Client.RunFastSyncAsync(session, agent.Id, prompt);
        return session;
    }
}
