using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Options;

/// <summary>Review D11: nothing reachable from the outside changes a running client's configuration.</summary>
public sealed class RunningClientOptionsTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task ChangingClientOptions_DoesNotChangeTheRunningClient()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        // A cut connection (not an overloaded_error, which ModelUnavailableTimeout waits for whatever MaxModelRetries says).
        h.Claude.Enqueue(FakeReply.Text("partial") with { StreamFault = FakeStreamFault.Disconnect(2) });
        h.Claude.Enqueue(FakeReply.Text("after one retry"));

        h.Client.Options.MaxModelRetries = 0;
        h.Client.Options.RunRescue = null!;

        var response = await Eventually.WithinAsync(
            h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"), "the run, retried per the options it was created with");
        Assert.Equal("after one retry", response.Text);
        Assert.Equal(2, h.Client.Options.MaxModelRetries);
        Assert.NotNull(h.Client.Options.RunRescue);
    }

    [DatabaseFact]
    public async Task ChangingTheHooksObjectAfterCreate_DoesNotChangeTheClient()
    {
        var hooks = new AgentPgHooks();
        var called = 0;
        await using var h = await Harness.StartAsync(db, o => o.Hooks = hooks);
        var agent = await h.AgentAsync();
        hooks.OnBeforeMessage = (_, _) =>
        {
            Interlocked.Increment(ref called);
            return Task.CompletedTask;
        };
        h.Client.Options.Hooks!.OnAfterMessage = (_, _) =>
        {
            Interlocked.Increment(ref called);
            return Task.CompletedTask;
        };
        h.Claude.Enqueue(FakeReply.Text("ok"));

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hi"), "the run");

        Assert.Equal(0, called);
    }
}
