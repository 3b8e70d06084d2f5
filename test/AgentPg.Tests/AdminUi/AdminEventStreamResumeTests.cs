using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.AdminUi;

/// <summary>The run page's live stream resumed by the browser (<c>Last-Event-ID</c>) after a retried model call began: the repeated
/// iteration is still a "reset" (the page drops the failed attempt's text), although its first start came before the resume
/// point. It used to be sent as a new "iteration", which the page ignores: the failed attempt's text stayed on the page.</summary>
public sealed class AdminEventStreamResumeTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [DatabaseFact]
    public async Task EventStream_ResumedAfterTheIterationStarted_ARetriedModelCallIsStillAReset()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        await using var app = await AdminApp.StartAsync(db, claude, worker: true);
        var agent = await app.Client.CreateAgentAsync(new AgentDefinition { Name = "rs_" + Guid.NewGuid().ToString("N")[..8], Model = "claude-sonnet-4-5" });
        var workerKnowsTheWatch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstDeltaSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var attempts = 0;
        claude.Respond(async (_, cancellationToken) =>
        {
            if (Interlocked.Increment(ref attempts) == 1)
            {
                await workerKnowsTheWatch.Task.WaitAsync(cancellationToken);
                // Text reaches the watcher, then the stream fails: the call is retried in the same iteration.
                return FakeReply.Text("A first attempt that breaks off in the middle of its sentence.") with
                {
                    StreamPause = new FakeStreamPause(3 + 2, firstDeltaSeen.Task), StreamFault = FakeStreamFault.Error(3 + 3),
                };
            }

            return FakeReply.Text("The retried answer.");
        });
        var run = await app.Client.RunFastAsync(await app.Client.NewSessionAsync(), agent.Id, "Tell me.");
        var events = new List<RunEvent>();
        await Eventually.WithinAsync(Task.Run(async () =>
        {
            await foreach (var e in app.Client.WatchRunAsync(run))
            {
                events.Add(e);
                if (!workerKnowsTheWatch.Task.IsCompleted)
                {
                    await Eventually.TrueAsync(() => app.Client.Engine.Deltas.IsWatched(run), "the worker learns of the watch", s_timeout);
                    workerKnowsTheWatch.SetResult();
                }

                if (e is TextDeltaEvent)
                {
                    firstDeltaSeen.TrySetResult();
                }
            }
        }), "the run", s_timeout);
        var starts = events.OfType<IterationStartedEvent>().ToList();
        Assert.Equal([1, 1], starts.Select(i => i.IterationNumber));

        // The browser had received the first start (and the failed attempt's text) when its connection dropped.
        using var http = app.HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, $"runs/{run}/events");
        request.Headers.Add("Last-Event-ID", starts[0].Sequence.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var response = await http.SendAsync(request);
        var body = await response.Content.ReadAsStringAsync();

        Assert.Contains($"id: {starts[1].Sequence}\nevent: reset\n", body, StringComparison.Ordinal);
        Assert.DoesNotContain("event: iteration", body, StringComparison.Ordinal);
        Assert.DoesNotContain($"id: {starts[0].Sequence}\n", body, StringComparison.Ordinal);
        Assert.Contains("event: finished", body, StringComparison.Ordinal);
    }
}
