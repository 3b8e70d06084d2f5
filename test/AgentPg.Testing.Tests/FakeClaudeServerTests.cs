using Anthropic;

namespace AgentPg.Testing.Tests;

/// <summary>
/// FakeClaudeServer driven through the official Anthropic SDK (13.12.0), split by concern: Messages, Validation, Faults,
/// Batches, Recording, Tokens.
/// </summary>
public sealed partial class FakeClaudeServerTests
{
    [Fact]
    public async Task StartAsync_QuickStart_AnswersAnEnqueuedReply()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.Enqueue(FakeReply.Text("Hi from the fake!"));
        using var client = claude.CreateClient();

        var message = await client.Messages.Create(Sdk.Ask("Hello"));

        Assert.Equal("Hi from the fake!", Sdk.Text(message));
        Assert.StartsWith("http://127.0.0.1:", claude.BaseUrl);
    }

    [Fact]
    public async Task StartAsync_InvalidOption_ThrowsNamingTheOption()
    {
        var error = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { ContextWindow = 0 }));

        Assert.Contains("ContextWindow", error.Message);
    }

    [Fact]
    public async Task DisposeAsync_InFlightSlowStream_AbortsItPromptly()
    {
        var claude = await FakeClaudeServer.StartAsync();
        using var client = claude.CreateClient(o => o with { MaxRetries = 0 });
        claude.Enqueue(FakeReply.Text("this would take minutes") with { EventDelay = TimeSpan.FromMinutes(1) });
        var stream = client.Messages.CreateStreaming(Sdk.Ask("Hi")).Aggregate();
        await claude.WaitForRequestAsync();
        var clock = System.Diagnostics.Stopwatch.StartNew();

        await claude.DisposeAsync();
        var error = await Record.ExceptionAsync(() => stream);

        Assert.NotNull(error);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(10), $"dispose took {clock.Elapsed}");
    }

    [Fact]
    public async Task DisposeAsync_PendingWait_FailsTheWait()
    {
        var claude = await FakeClaudeServer.StartAsync();
        var wait = claude.WaitForRequestAsync(timeout: TimeSpan.FromSeconds(30));

        await claude.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => wait);
    }
}
