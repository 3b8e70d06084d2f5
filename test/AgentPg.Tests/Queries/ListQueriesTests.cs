using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Queries;

/// <summary>The read side shared by the admin UI and the CLI: filters, keyset pagination, and the tenant filter enforced in
/// SQL for lists, lookups by id and statistics.</summary>
public sealed class ListQueriesTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task ListRunsAsync_PagingWhileRunsAreCreated_ShowsEveryEarlierRunOnceNewestFirst()
    {
        await using var client = db.CreateClient();
        var agent = await db.Seed.AgentAsync();
        var session = await db.Seed.SessionAsync();
        var seeded = new List<Guid>();
        for (var i = 0; i < 23; i++)
        {
            seeded.Add(await db.Seed.RunAsync(session, agent));
        }

        var seen = new List<Run>();
        string? cursor = null;
        var pages = 0;
        do
        {
            var page = await client.ListRunsAsync(new RunQuery { SessionId = session, Limit = 5, Cursor = cursor });
            Assert.True(page.Items.Count <= 5);
            seen.AddRange(page.Items);
            cursor = page.NextCursor;
            pages++;
            // Runs created meanwhile are newer than every cursor: they never shift the pages still to come.
            await db.Seed.RunAsync(session, agent);
        }
        while (cursor is not null);

        Assert.Equal(5, pages);
        Assert.Equal(seeded.Count, seen.Count);
        Assert.Equal(seeded.ToHashSet(), seen.Select(r => r.Id).ToHashSet());
        var ordered = seen.OrderByDescending(r => r.CreatedAt).ThenByDescending(r => r.Id).Select(r => r.Id);
        Assert.Equal(ordered, seen.Select(r => r.Id));
    }

    [DatabaseFact]
    public async Task ListRunsAsync_EachFilter_ReturnsOnlyMatchingRuns()
    {
        await using var client = db.CreateClient();
        var agent = await db.Seed.AgentAsync();
        var other = await db.Seed.AgentAsync();
        var session = await db.Seed.SessionAsync();
        var streaming = await db.Seed.RunAsync(session, agent);
        var batch = await db.Seed.RunAsync(session, agent, mode: "batch");
        var failed = await db.Seed.RunAsync(session, other);
        await db.Seed.FinishRunAsync(failed, "failed");

        async Task<HashSet<Guid>> IdsAsync(RunQuery query)
            => (await client.ListRunsAsync(query with { SessionId = session })).Items.Select(r => r.Id).ToHashSet();

        Assert.Equal([streaming, batch, failed], await IdsAsync(new RunQuery()));
        Assert.Equal([failed], await IdsAsync(new RunQuery { States = [RunState.Failed] }));
        Assert.Equal([streaming, batch], await IdsAsync(new RunQuery { States = [RunState.Pending, RunState.Streaming] }));
        Assert.Equal([failed], await IdsAsync(new RunQuery { AgentId = other }));
        Assert.Equal([batch], await IdsAsync(new RunQuery { Mode = RunMode.Batch }));
        Assert.Equal([streaming], await IdsAsync(new RunQuery { Ids = [streaming, Guid.NewGuid()] }));
        Assert.Equal([streaming, batch, failed], await IdsAsync(new RunQuery { RootOnly = true }));
        var created = (await client.GetRunAsync(batch)).CreatedAt;
        Assert.DoesNotContain(streaming, await IdsAsync(new RunQuery { CreatedAfter = created.AddTicks(10) }));
        Assert.Empty(await IdsAsync(new RunQuery { CreatedBefore = (await client.GetRunAsync(streaming)).CreatedAt }));
    }

    [DatabaseFact]
    public async Task ListQueries_TenantFilter_NeverReturnAnotherTenantsRows()
    {
        await using var client = db.CreateClient();
        var tenant = $"t-{Guid.NewGuid():N}";
        var mine = await client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant, ["user"] = "ann" });
        var theirs = await client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = "other-" + tenant });
        var agent = await db.Seed.AgentAsync();
        var myRun = await db.Seed.RunAsync(mine, agent);
        var theirRun = await db.Seed.RunAsync(theirs, agent);
        var theirIteration = await db.Seed.ToolIterationAsync(theirRun);
        var theirExecution = await db.Seed.ToolExecutionAsync(theirRun, theirIteration, "toolu_1", "lookup");
        var myIteration = await db.Seed.ToolIterationAsync(myRun);
        var myExecution = await db.Seed.ToolExecutionAsync(myRun, myIteration, "toolu_2", "lookup");
        await db.Seed.FinishRunAsync(theirRun, "failed", inputTokens: 1000);
        var filter = new Dictionary<string, object?> { ["tenant"] = tenant };

        var sessions = await client.ListSessionsAsync(new SessionQuery { Metadata = filter, Ids = [mine, theirs] });
        Assert.Equal([mine], sessions.Items.Select(s => s.Id));
        var runs = await client.ListRunsAsync(new RunQuery { SessionMetadata = filter, Ids = [myRun, theirRun] });
        Assert.Equal([myRun], runs.Items.Select(r => r.Id));
        Assert.Empty((await client.ListRunsAsync(new RunQuery { SessionMetadata = filter, Ids = [theirRun] })).Items);
        var executions = await client.ListToolExecutionsAsync(new ToolExecutionQuery { SessionMetadata = filter, ToolName = "lookup" });
        Assert.Equal([myExecution], executions.Items.Select(e => e.Id));
        Assert.Empty((await client.ListToolExecutionsAsync(new ToolExecutionQuery { SessionMetadata = filter, Ids = [theirExecution] })).Items);

        var statistics = await client.GetRunStatisticsAsync(TimeSpan.FromHours(1), TimeSpan.FromMinutes(5), filter);
        Assert.Equal(1, statistics.CreatedByState.Values.Sum());
        Assert.False(statistics.CreatedByState.ContainsKey(RunState.Failed));
        Assert.Equal(0, statistics.Buckets.Sum(b => b.Failed));
        Assert.Equal(0, statistics.Buckets.Sum(b => b.Usage.InputTokens));
        Assert.Equal(1, statistics.Queue.Sum(q => q.Count));
    }

    [DatabaseFact]
    public async Task ListToolExecutionsAsync_Filters_ByRunStateNameAndKind()
    {
        await using var client = db.CreateClient();
        var run = await db.Seed.RunAsync();
        var iteration = await db.Seed.ToolIterationAsync(run, toolExecutions: 3);
        var pending = await db.Seed.ToolExecutionAsync(run, iteration, "toolu_a", "search");
        var running = await db.Seed.ToolExecutionAsync(run, iteration, "toolu_b", "search", holder: "w1");
        var other = await db.Seed.ToolExecutionAsync(run, iteration, "toolu_c", "fetch");

        async Task<HashSet<Guid>> IdsAsync(ToolExecutionQuery query)
            => (await client.ListToolExecutionsAsync(query with { RunId = run })).Items.Select(e => e.Id).ToHashSet();

        Assert.Equal([pending, running, other], await IdsAsync(new ToolExecutionQuery()));
        Assert.Equal([pending, running], await IdsAsync(new ToolExecutionQuery { ToolName = "search" }));
        Assert.Equal([running], await IdsAsync(new ToolExecutionQuery { States = [ToolExecutionState.Running] }));
        Assert.Empty(await IdsAsync(new ToolExecutionQuery { IsAgentTool = true }));
        Assert.Equal(3, (await IdsAsync(new ToolExecutionQuery { IsAgentTool = false })).Count);
        var first = await client.ListToolExecutionsAsync(new ToolExecutionQuery { RunId = run, Limit = 2 });
        var second = await client.ListToolExecutionsAsync(new ToolExecutionQuery { RunId = run, Limit = 2, Cursor = first.NextCursor });
        Assert.Null(second.NextCursor);
        Assert.Equal(3, first.Items.Concat(second.Items).Select(e => e.Id).Distinct().Count());
    }

    [DatabaseFact]
    public async Task GetRunStatisticsAsync_CountsFinishedRunsPerBucketAndTheQueue()
    {
        await using var client = db.CreateClient();
        var session = await db.Seed.SessionAsync("""{"stats": "only"}""");
        var agent = await db.Seed.AgentAsync();
        var done = await db.Seed.RunAsync(session, agent);
        var failed = await db.Seed.RunAsync(session, agent);
        var cancelled = await db.Seed.RunAsync(session, agent);
        await db.Seed.RunAsync(session, agent, mode: "batch");
        await db.Seed.FinishRunAsync(done, "completed", inputTokens: 100, outputTokens: 20);
        await db.Seed.FinishRunAsync(failed, "failed", inputTokens: 7);
        await db.Seed.FinishRunAsync(cancelled, "cancelled");

        var statistics = await client.GetRunStatisticsAsync(TimeSpan.FromHours(1), TimeSpan.FromMinutes(1),
            new Dictionary<string, object?> { ["stats"] = "only" });

        Assert.InRange(statistics.Buckets.Count, 60, 61);
        Assert.True(statistics.Until - statistics.Since == TimeSpan.FromHours(1));
        Assert.Equal(statistics.Buckets.OrderBy(b => b.Start).Select(b => b.Start), statistics.Buckets.Select(b => b.Start));
        Assert.Equal(1, statistics.Buckets.Sum(b => b.Completed));
        Assert.Equal(1, statistics.Buckets.Sum(b => b.Failed));
        Assert.Equal(1, statistics.Buckets.Sum(b => b.Cancelled));
        Assert.Equal(107, statistics.Buckets.Sum(b => b.Usage.InputTokens));
        Assert.Equal(20, statistics.Buckets.Sum(b => b.Usage.OutputTokens));
        Assert.Equal(1, statistics.CreatedByState[RunState.Completed]);
        Assert.Equal(1, statistics.CreatedByState[RunState.Pending]);
        Assert.Equal([new QueueDepth(RunMode.Batch, RunState.Pending, 1)], statistics.Queue);
    }

    [DatabaseFact]
    public async Task ListInstancesAsync_ShowsHeartbeatAgeLeaderToolsAndWork()
    {
        await using var client = db.CreateClient();
        var id = $"inst-{Guid.NewGuid():N}";
        await db.Seed.InstanceAsync(id, TimeSpan.FromSeconds(42));
        await db.Seed.LeaseAsync(id);
        var run = await db.Seed.RunAsync();
        await db.Seed.ClaimRunAsync(run, id, TimeSpan.FromSeconds(1));

        var instance = (await client.ListInstancesAsync()).Single(i => i.Id == id);

        Assert.True(instance.IsLeader);
        Assert.InRange(instance.HeartbeatAge, TimeSpan.FromSeconds(42), TimeSpan.FromSeconds(100));
        Assert.Equal(1, instance.ActiveRuns);
        Assert.Equal(0, instance.ActiveToolExecutions);
        Assert.Empty(instance.Tools);
    }

    [DatabaseFact]
    public async Task ListQueries_BadInput_ThrowsWithWhatToFix()
    {
        await using var client = db.CreateClient();

        var cursor = await Assert.ThrowsAsync<ArgumentException>(() => client.ListRunsAsync(new RunQuery { Cursor = "not-a-cursor" }));
        Assert.Contains("NextCursor", cursor.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentException>(() => client.ListSessionsAsync(new SessionQuery { Cursor = "MTIzLmFiYw" }));
        var limit = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.ListToolExecutionsAsync(new ToolExecutionQuery { Limit = 0 }));
        Assert.Contains("1 to 1000", limit.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetRunStatisticsAsync(TimeSpan.FromDays(40), TimeSpan.FromDays(1)));
        await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() => client.GetRunStatisticsAsync(TimeSpan.FromDays(1), TimeSpan.FromSeconds(1)));

        // Before: ArgumentOutOfRangeException "Specified argument was out of the range of valid values. (Parameter 'state')".
        var state = await Assert.ThrowsAsync<ArgumentException>(() => client.ListRunsAsync(new RunQuery { States = [RunState.Completed, (RunState)42] }));
        Assert.Equal("query", state.ParamName);
        Assert.Contains("RunQuery.States contains 42, which is not a RunState; use the RunState members (Pending,", state.Message, StringComparison.Ordinal);
        var toolState = await Assert.ThrowsAsync<ArgumentException>(() => client.ListToolExecutionsAsync(new ToolExecutionQuery { States = [(ToolExecutionState)42] }));
        Assert.Contains("ToolExecutionQuery.States contains 42", toolState.Message, StringComparison.Ordinal);
    }
}
