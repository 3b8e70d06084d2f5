using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>A run's token counts are sums over its iterations: a long cached run passes 2^31 - 1.</summary>
public sealed class RunUsageTotalsTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    [DatabaseTheory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task TotalsPastInt32Max_TheRunCompletesAndReportsThem(bool batch)
    {
        // The run's counters were INTEGER: thousands of iterations reading ~1M tokens from the cache each pass 2^31 - 1, and
        // the statement that added the next iteration's usage failed with 22003 (integer out of range), as did the one that
        // failed the run with it: the run could never end.
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var run = batch ? await h.Client.RunAsync(session, agent.Id, "go") : await h.Client.RunFastAsync(session, agent.Id, "go");
        try
        {
            // As if its earlier iterations had counted 2^31 - 1 001 tokens of each kind.
            const int Seeded = int.MaxValue - 1_000;
            await db.ExecuteAsync(
                "UPDATE {schema}.agentpg_runs SET input_tokens = $2, output_tokens = $2, cache_creation_input_tokens = $2, cache_read_input_tokens = $2 " +
                "WHERE id = $1", run, Seeded);
            h.Claude.Respond(_ => FakeReply.Text("done") with
            {
                Usage = new FakeUsage { InputTokens = 2_000, OutputTokens = 3_000, CacheCreationInputTokens = 4_000, CacheReadInputTokens = 900_000 },
            });
            await h.AddClientAsync();

            var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(run), "the run to complete", s_timeout);

            Assert.Equal("done", response.Text);
            var expected = new Usage
            {
                InputTokens = Seeded + 2_000L, OutputTokens = Seeded + 3_000L, CacheCreationInputTokens = Seeded + 4_000L, CacheReadInputTokens = Seeded + 900_000L,
            };
            Assert.Equal(expected, (await h.Client.GetRunAsync(run)).Usage);
            Assert.Equal(expected, response.TotalUsage);
            Assert.Equal(expected.CacheReadInputTokens, await db.ScalarAsync<long>("SELECT cache_read_input_tokens FROM {schema}.agentpg_runs WHERE id = $1", run));
        }
        finally
        {
            await h.Client.CancelRunAsync(run);
        }
    }
}
