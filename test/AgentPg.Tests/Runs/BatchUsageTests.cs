using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>Token usage in batch mode, against the same run in streaming mode: what Claude charged is what the run, its
/// iterations and its response report.</summary>
public sealed class BatchUsageTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static readonly Dictionary<string, object?> s_extended = new() { ["extended_context"] = true };

    private static Task<Response> RunAsync(Harness h, bool batch, Guid session, Guid agent, string prompt)
        => Eventually.WithinAsync(batch ? h.Client.RunSyncAsync(session, agent, prompt) : h.Client.RunFastSyncAsync(session, agent, prompt),
            "the run", s_timeout);

    [DatabaseTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AnswerCutOffByTheContextWindow_ItsTokensAreCountedWithTheRetriedRequest(bool batch)
    {
        // The cut-off answer is paid for and dropped; the request goes again with the 1M window (docs/long-conversations.md:
        // "the cut-off answer is dropped; its tokens are counted").
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Config = s_extended });
        h.Claude.Enqueue(FakeReply.Text("cut off") with
        {
            StopReason = FakeStopReason.ModelContextWindowExceeded,
            Usage = new FakeUsage { InputTokens = 1000, OutputTokens = 300, CacheCreationInputTokens = 20, CacheReadInputTokens = 10 },
        });
        h.Claude.Enqueue(FakeReply.Text("answered in 1M") with
        {
            Usage = new FakeUsage { InputTokens = 2000, OutputTokens = 40, CacheCreationInputTokens = 2, CacheReadInputTokens = 1 },
        });

        var response = await RunAsync(h, batch, await h.Client.NewSessionAsync(), agent.Id, "go");

        Assert.Equal("answered in 1M", response.Text);
        var expected = new Usage { InputTokens = 3000, OutputTokens = 340, CacheCreationInputTokens = 22, CacheReadInputTokens = 11 };
        Assert.Equal(expected, response.Usage);
        Assert.Equal(expected, response.TotalUsage);
        Assert.Equal(expected, (await h.Client.GetRunAsync(response.RunId)).Usage);
        Assert.Equal(expected, Assert.Single(await h.Client.GetIterationsAsync(response.RunId)).Usage);
    }

    [DatabaseTheory]
    [InlineData(true, true)]
    [InlineData(false, true)]
    [InlineData(true, false)]
    [InlineData(false, false)]
    public async Task AnswerCutOffByTheContextWindow_ItsOneHourCacheWritesArePricedWithTheIteration(bool batch, bool answered)
    {
        // The cut-off answer's 1-hour cache writes are part of the iteration's cache writes: GetUsageAsync must count and price
        // them as 1-hour writes, whichever answer follows (a batch poll reads the iteration's usage so far back from the row).
        await using var h = await Harness.StartAsync(db);
        var model = "claude-batch-usage-" + Guid.NewGuid().ToString("N")[..8];
        var agent = await h.AgentAsync(a => a with { Model = model, Config = s_extended });
        var cutOff = FakeReply.Text("cut off") with
        {
            StopReason = FakeStopReason.ModelContextWindowExceeded,
            Usage = new FakeUsage { InputTokens = 1000, OutputTokens = 300, CacheCreationInputTokens = 400, CacheCreation1hInputTokens = 300, CacheReadInputTokens = 10 },
        };
        h.Claude.Enqueue(cutOff, answered
            ? FakeReply.Text("answered in 1M") with
            {
                Usage = new FakeUsage { InputTokens = 2000, OutputTokens = 40, CacheCreationInputTokens = 20, CacheCreation1hInputTokens = 5, CacheReadInputTokens = 1 },
            }
            : cutOff);
        var session = await h.Client.NewSessionAsync();

        if (answered)
        {
            Assert.Equal("answered in 1M", (await RunAsync(h, batch, session, agent.Id, "go")).Text);
        }
        else
        {
            Assert.Equal("context_window_exceeded", (await Assert.ThrowsAsync<AgentPgException>(() => RunAsync(h, batch, session, agent.Id, "go"))).Context["error_type"]);
        }

        var report = await h.Client.GetUsageAsync(new UsageQuery
        {
            SessionId = session, Prices = new Dictionary<string, ModelPrice> { [model] = new ModelPrice(3m, 15m, 3.75m, 6m, 0.3m) { BatchDiscount = 0m } },
        });
        var row = Assert.Single(report.Rows);
        var (writes, writes1h) = answered ? (420L, 305L) : (800L, 600L);
        Assert.Equal((writes, writes1h, 1L), (row.CacheCreationInputTokens, row.CacheCreation1hInputTokens, row.ModelCalls));
        var (input, output, read) = answered ? (3000m, 340m, 11m) : (2000m, 600m, 20m);
        Assert.Equal((input * 3m + output * 15m + (writes - writes1h) * 3.75m + writes1h * 6m + read * 0.3m) / 1_000_000m, row.Cost);
    }

    [DatabaseTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AnswerCutOffTwice_TheFailedIterationKeepsTheModelItsRequestsNamed(bool batch)
    {
        // GetUsageAsync prices an iteration at the model stored with it, and only one with none (it failed before a request
        // was built) at its agent's current model: a failed iteration that called Claude must store the model it asked.
        await using var h = await Harness.StartAsync(db);
        var (asked, later) = ("claude-asked-" + Guid.NewGuid().ToString("N")[..8], "claude-later-" + Guid.NewGuid().ToString("N")[..8]);
        var agent = await h.AgentAsync(a => a with { Model = asked, Config = s_extended });
        var cutOff = FakeReply.Text("cut off") with
        {
            StopReason = FakeStopReason.ModelContextWindowExceeded,
            Usage = new FakeUsage { InputTokens = 1000, OutputTokens = 300, CacheCreationInputTokens = 0, CacheReadInputTokens = 0 },
        };
        h.Claude.Enqueue(cutOff, cutOff);
        var session = await h.Client.NewSessionAsync();
        await Assert.ThrowsAsync<AgentPgException>(() => RunAsync(h, batch, session, agent.Id, "go"));

        await h.Client.UpdateAgentAsync(agent with { Model = later });

        var row = Assert.Single((await h.Client.GetUsageAsync(new UsageQuery { SessionId = session, GroupBy = [UsageGrouping.Model] })).Rows);
        Assert.Equal((asked, 2000L, 600L), (row.Model, row.InputTokens, row.OutputTokens));
    }

    [DatabaseTheory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task AnswerCutOffTwice_TheFailedRunCountsBothAnswers(bool batch)
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Config = s_extended });
        var cutOff = FakeReply.Text("cut off") with
        {
            StopReason = FakeStopReason.ModelContextWindowExceeded,
            Usage = new FakeUsage { InputTokens = 1000, OutputTokens = 300, CacheCreationInputTokens = 0, CacheReadInputTokens = 0 },
        };
        h.Claude.Enqueue(cutOff, cutOff);
        var session = await h.Client.NewSessionAsync();

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => RunAsync(h, batch, session, agent.Id, "go"));

        Assert.Equal("context_window_exceeded", ex.Context["error_type"]);
        var runId = ex.RunId!.Value;
        var expected = new Usage { InputTokens = 2000, OutputTokens = 600 };
        Assert.Equal(expected, (await h.Client.GetRunAsync(runId)).Usage);
        Assert.Equal(expected, Assert.Single(await h.Client.GetIterationsAsync(runId)).Usage);
    }
}
