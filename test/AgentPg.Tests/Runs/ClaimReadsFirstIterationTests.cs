using System.Text.Json;
using AgentPg.Runs;
using AgentPg.Tests.Infrastructure;
using AgentPg.Workers;
using Npgsql;

namespace AgentPg.Tests.Runs;

/// <summary>The run claim's batch reads what the claimed runs' first iterations are built from (agents, delegates,
/// conversations) for all of them at once; the request built from it must be the one the per-run read builds.</summary>
public sealed class ClaimReadsFirstIterationTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task Claim_ReadsEachRunsAgentDelegatesAndConversation_AsTheIterationStartWould()
    {
        var first = await db.Seed.AgentAsync();
        var second = await db.Seed.AgentAsync();
        var delegating = await db.Seed.AgentAsync(delegates: [second, first]);

        // A root run continuing a conversation: a summary and a finished turn count, a cancelled turn does not (review D22).
        var session = await db.Seed.SessionAsync();
        var summary = await db.Seed.SummaryAsync(session, "Earlier: the user planned a trip.");
        var earlier = await db.Seed.RunAsync(session, delegating);
        var earlierQuestion = await db.Seed.UserTextAsync(session, earlier, "Where to?");
        var earlierAnswer = await db.Seed.UserTextAsync(session, earlier, "Lisbon.");
        await db.Seed.FinishRunAsync(earlier);
        var cancelled = await db.Seed.RunAsync(session, delegating);
        await db.Seed.UserTextAsync(session, cancelled, "Never mind");
        await db.Seed.FinishRunAsync(cancelled, "cancelled");
        var root = await db.Seed.RunAsync(session, delegating, prompt: "And the budget?");

        // A child run sees only its own messages; a run without a prompt or history has none.
        var parentSession = await db.Seed.SessionAsync();
        var parent = await db.Seed.RunAsync(parentSession, delegating);
        await db.Seed.UserTextAsync(parentSession, parent, "Plan it");
        await db.Seed.ClaimRunAsync(parent, "someone", TimeSpan.Zero, state: "pending_tools");
        var child = await db.Seed.ChildRunAsync(parent, first);
        var empty = await db.Seed.RunAsync(prompt: "");

        var engine = TestEngine.Create(db, "claim-reads-1");
        var worker = new StreamingRunWorker(engine);
        var claimed = await worker.ClaimAsync(10, CancellationToken.None);

        Assert.Equal(new[] { root, child, empty }.Order(), claimed.Select(c => c.Run.Id).Order());
        var byId = claimed.ToDictionary(c => c.Run.Id);
        Assert.All(claimed, c => Assert.NotNull(c.FirstIterationInputs));

        var rootHistory = byId[root].FirstIterationInputs!.History.Select(m => m.Id).ToList();
        Assert.Equal([summary, earlierQuestion, earlierAnswer], rootHistory.Take(3));
        Assert.Equal(4, rootHistory.Count); // ... and the prompt the claim wrote
        Assert.Equal("And the budget?", byId[root].FirstIterationInputs!.History[^1].Content.Single().Text);
        Assert.Equal([second, first], byId[root].FirstIterationInputs!.Delegates.Select(d => d.Id));
        Assert.Equal(["do the part"], byId[child].FirstIterationInputs!.History.Select(m => m.Content.Single().Text));
        Assert.Empty(byId[child].FirstIterationInputs!.Delegates);
        Assert.Empty(byId[empty].FirstIterationInputs!.History);

        // The requests built from the claim's read equal those built from the iteration start's own read.
        var starter = new IterationStarter(engine);
        foreach (var run in claimed)
        {
            var fromClaim = await starter.StartAsync(run, streaming: true, CancellationToken.None);
            Assert.Null(run.FirstIterationInputs);
            var fromOwnRead = await starter.LoadAsync(run, fromClaim.IterationNumber, fromClaim.IterationId, run.MaxTokensOverride, includeHistory: true,
                CancellationToken.None);
            Assert.Equal(JsonSerializer.Serialize(fromOwnRead.Body()), JsonSerializer.Serialize(fromClaim.Body()));
        }
    }

    [DatabaseFact]
    public async Task AgentReadsAfterTheClaim_DoNotReadTheRunsTable()
    {
        // A connection may keep the agent reads' plans from a time the runs table was small; a plan that reaches the agents
        // through agentpg_runs then scans every run of the agent (the benchmark's plan: 6 841 rows filtered per claim). The
        // claim hands over the agent ids themselves.
        var delegateAgent = await db.Seed.AgentAsync();
        var agent = await db.Seed.AgentAsync(delegates: [delegateAgent]);
        await db.Seed.RunAsync(agent: agent, mode: "batch");
        var engine = TestEngine.Create(db, "claim-reads-2");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await using (var claim = new NpgsqlCommand($"SELECT count(*) FROM \"{db.Schema}\".agentpg_claim_runs('claim-reads-2', 10, 'batch')", connection))
        {
            Assert.Equal(1L, (long)(await claim.ExecuteScalarAsync())!);
        }

        var runs = $"'\"{db.Schema}\".agentpg_runs'::regclass";
        var blocksRead = $"SELECT pg_stat_get_xact_blocks_fetched({runs})";
        await using var count = new NpgsqlCommand(blocksRead, connection);
        var before = (long)(await count.ExecuteScalarAsync())!;
        await using (var agents = new NpgsqlCommand(engine.Sql.Agents.ForClaimed, connection))
        {
            await using var reader = await agents.ExecuteReaderAsync();
            Assert.True(await reader.ReadAsync());
            Assert.Equal(agent, reader.GetGuid(0));
        }

        await using (var delegates = new NpgsqlCommand(engine.Sql.Agents.DelegatesForClaimed, connection))
        {
            await using var reader = await delegates.ExecuteReaderAsync();
            Assert.True(await reader.ReadAsync());
            Assert.Equal(delegateAgent, reader.GetGuid(1));
        }

        Assert.Equal(before, (long)(await count.ExecuteScalarAsync())!);
    }
}
