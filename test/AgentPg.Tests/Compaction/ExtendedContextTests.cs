using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Compaction;

/// <summary>The 1M-token window retry, end to end in both modes, and its place after compaction.</summary>
public sealed class ExtendedContextTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string Beta = "context-1m-2025-08-07";

    [DatabaseFact]
    public async Task BatchRun_PromptTooLong_WithExtendedContext_IsResubmittedWithThe1MBeta()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { ContextWindow = 30 });
        var agent = await h.AgentAsync(a => a with { Config = new Dictionary<string, object?> { ["extended_context"] = true } });
        h.Claude.Enqueue(FakeReply.Text("read it all in a batch"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, new string('x', 400)),
            "the batch run to complete");

        Assert.Equal("read it all in a batch", response.Text);
        var batches = h.Claude.Requests.Where(r => r.Method == "POST" && r.Path == "/v1/messages/batches").ToList();
        Assert.Equal(2, batches.Count);
        Assert.DoesNotContain(Beta, batches[0].Betas);
        Assert.Contains(Beta, batches[1].Betas);
        var iterations = await h.Client.GetIterationsAsync(response.RunId);
        Assert.Single(iterations);
    }

    // Claude's answer when the prompt fits but the prompt and max_tokens together do not.
    private const string InputAndMaxTokensOverTheWindow =
        "input length and `max_tokens` exceed context limit: 190000 + 64000 > 200000, decrease input length or `max_tokens` and try again";

    [DatabaseFact]
    public async Task BatchRun_InputAndMaxTokensOverTheWindow_IsResubmittedWithThe1MBeta()
    {
        // One context-window policy for both modes: a batch result errored this way takes the prompt-too-long path, as a stream does.
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Config = Extended });
        h.Claude.Enqueue(FakeReply.Error(400, "invalid_request_error", InputAndMaxTokensOverTheWindow));
        h.Claude.Enqueue(FakeReply.Text("fits in 1M"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the batch run to complete");

        Assert.Equal("fits in 1M", response.Text);
        var batches = h.Claude.Requests.Where(r => r.Method == "POST" && r.Path == "/v1/messages/batches").ToList();
        Assert.Equal(2, batches.Count);
        Assert.DoesNotContain(Beta, batches[0].Betas);
        Assert.Contains(Beta, batches[1].Betas);
    }

    [DatabaseFact]
    public async Task StreamingRun_InputAndMaxTokensOverTheWindow_IsRetriedWithThe1MBeta()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Config = Extended });
        h.Claude.Enqueue(FakeReply.Error(400, "invalid_request_error", InputAndMaxTokensOverTheWindow));
        h.Claude.Enqueue(FakeReply.Text("fits in 1M"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go");

        Assert.Equal("fits in 1M", response.Text);
        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
        Assert.Equal(2, requests.Count);
        Assert.DoesNotContain(Beta, requests[0].Betas);
        Assert.Contains(Beta, requests[1].Betas);
    }

    [DatabaseFact]
    public async Task BatchRun_PromptTooLong_WithoutExtendedContext_FailsSayingHowToFixIt()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { ContextWindow = 30 });
        var agent = await h.AgentAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(
            h.Client.RunSyncAsync(h.Client.NewSessionAsync().GetAwaiter().GetResult(), agent.Id, new string('x', 400)), "the batch run to fail"));

        Assert.Equal("context_window_exceeded", ex.Context["error_type"]);
        Assert.Contains("prompt is too long", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task AutoCompactionWithNothingToCompact_ThenThe1MWindow_ThenASuccess()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { ContextWindow = 30 }, o =>
        {
            o.AutoCompaction = true;
            o.ExtendedContext = true;
        });
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("fits in 1M"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, new string('x', 400));

        Assert.Equal("fits in 1M", response.Text);
        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
        Assert.Equal(2, requests.Count);
        Assert.Contains(Beta, requests[1].Betas);
    }

    [DatabaseFact]
    public async Task EverythingTried_TheErrorSaysSo()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { ContextWindow = 30, ExtendedContextWindow = 40 }, o =>
        {
            o.AutoCompaction = true;
            o.ExtendedContext = true;
        });
        var agent = await h.AgentAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () =>
            await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, new string('x', 400)));

        Assert.Equal("context_window_exceeded", ex.Context["error_type"]);
        Assert.Contains("even with automatic compaction and the 1M-token window", ex.Message, StringComparison.Ordinal);
    }

    private static Dictionary<string, object?> Extended => new() { ["extended_context"] = true };

    private static FakeReply WindowExceeded() => FakeReply.Text("cut off") with { StopReason = FakeStopReason.ModelContextWindowExceeded };

    [DatabaseFact]
    public async Task StreamingRun_ModelContextWindowExceeded_WithExtendedContext_IsRetriedWithThe1MBeta()
    {
        // D10: generation that runs into the window takes the prompt-too-long path: the 1M window when allowed.
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Config = Extended });
        h.Claude.Enqueue(WindowExceeded());
        h.Claude.Enqueue(FakeReply.Text("finished in 1M"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go");

        Assert.Equal("finished in 1M", response.Text);
        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).ToList();
        Assert.Equal(2, requests.Count);
        Assert.DoesNotContain(Beta, requests[0].Betas);
        Assert.Contains(Beta, requests[1].Betas);
        Assert.Single(await h.Client.GetIterationsAsync(response.RunId));
    }

    [DatabaseFact]
    public async Task StreamingRun_ModelContextWindowExceeded_EvenWithThe1MWindow_SaysItWasTried()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Config = Extended });
        h.Claude.Enqueue(WindowExceeded());
        h.Claude.Enqueue(WindowExceeded());

        var ex = await Assert.ThrowsAsync<AgentPgException>(async () => await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"));

        Assert.Equal("context_window_exceeded", ex.Context["error_type"]);
        Assert.Contains("even with the 1M-token window", ex.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("enable AgentPgOptions.ExtendedContext", ex.Message, StringComparison.Ordinal);
        Assert.Equal(2, h.Claude.Requests.Count(r => r.IsMessagesCall));
    }

    [DatabaseFact]
    public async Task BatchRun_ModelContextWindowExceeded_WithExtendedContext_IsResubmittedWithThe1MBeta()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Config = Extended });
        h.Claude.Enqueue(WindowExceeded());
        h.Claude.Enqueue(FakeReply.Text("batch finished in 1M"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the batch run to complete");

        Assert.Equal("batch finished in 1M", response.Text);
        var batches = h.Claude.Requests.Where(r => r.Method == "POST" && r.Path == "/v1/messages/batches").ToList();
        Assert.Equal(2, batches.Count);
        Assert.DoesNotContain(Beta, batches[0].Betas);
        Assert.Contains(Beta, batches[1].Betas);
    }

    [DatabaseFact]
    public async Task BatchRun_ModelContextWindowExceeded_WithoutExtendedContext_FailsSayingHowToFixIt()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(WindowExceeded());

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(
            h.Client.RunSyncAsync(h.Client.NewSessionAsync().GetAwaiter().GetResult(), agent.Id, "go"), "the batch run to fail"));

        Assert.Equal("context_window_exceeded", ex.Context["error_type"]);
        Assert.Contains("enable AgentPgOptions.ExtendedContext", ex.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task BatchRun_PromptTooLong_EvenWithThe1MWindow_SaysItWasTried()
    {
        await using var h = await Harness.StartAsync(db, new FakeClaudeServerOptions { ContextWindow = 30, ExtendedContextWindow = 40 });
        var agent = await h.AgentAsync(a => a with { Config = Extended });

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(
            h.Client.RunSyncAsync(h.Client.NewSessionAsync().GetAwaiter().GetResult(), agent.Id, new string('x', 400)), "the batch run to fail"));

        Assert.Equal("context_window_exceeded", ex.Context["error_type"]);
        Assert.Contains("even with the 1M-token window", ex.Message, StringComparison.Ordinal);
        Assert.Contains("prompt is too long", ex.Message, StringComparison.Ordinal);
    }
}
