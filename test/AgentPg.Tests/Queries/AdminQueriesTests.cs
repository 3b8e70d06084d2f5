using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Queries;

/// <summary>The rest of the admin read API: compaction events across sessions, and the time filters of the tool
/// execution and session lists; each with the tenant filter applied in SQL.</summary>
public sealed class AdminQueriesTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private Task<Guid> CompactionEventAsync(Guid session, string reason = "manual")
        => db.ScalarAsync<Guid>(
            """
            INSERT INTO {schema}.agentpg_compaction_events (session_id, strategy, reason, original_tokens, compacted_tokens, messages_removed)
            VALUES ($1, 'hybrid', $2, 1000, 100, 3) RETURNING id
            """, session, reason);

    [DatabaseFact]
    public async Task ListCompactionEventsAsync_PagesNewestFirst_WithoutGapsOrDuplicatesWhileEventsAreAdded_AndFiltersByTenant()
    {
        await using var client = db.CreateClient();
        var tenant = $"t-{Guid.NewGuid():N}";
        var mine = await client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = tenant });
        var theirs = await client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant"] = "other-" + tenant });
        var seeded = new List<Guid>();
        for (var i = 0; i < 5; i++)
        {
            seeded.Add(await CompactionEventAsync(mine));
        }

        var theirEvent = await CompactionEventAsync(theirs);
        var filter = new Dictionary<string, object?> { ["tenant"] = tenant };

        var seen = new List<CompactionEvent>();
        string? cursor = null;
        do
        {
            var page = await client.ListCompactionEventsAsync(new CompactionEventQuery { SessionMetadata = filter, Limit = 2, Cursor = cursor });
            seen.AddRange(page.Items);
            cursor = page.NextCursor;
            await CompactionEventAsync(mine);   // newer than every cursor: never shifts the pages still to come
        }
        while (cursor is not null);

        Assert.Equal(seeded.ToHashSet(), seen.Select(e => e.Id).ToHashSet());
        Assert.Equal(seeded.Count, seen.Count);
        Assert.Equal(seen.OrderByDescending(e => e.CreatedAt).ThenByDescending(e => e.Id).Select(e => e.Id), seen.Select(e => e.Id));
        Assert.All(seen, e => Assert.Equal(mine, e.SessionId));
        Assert.Equal(1000, seen[0].OriginalTokens);

        Assert.Equal([theirEvent], (await client.ListCompactionEventsAsync(new CompactionEventQuery { SessionId = theirs })).Items.Select(e => e.Id));
        Assert.Empty((await client.ListCompactionEventsAsync(new CompactionEventQuery { SessionId = theirs, SessionMetadata = filter })).Items);
        var after = (await client.ListCompactionEventsAsync(new CompactionEventQuery { SessionId = mine, CreatedAfter = seen[0].CreatedAt.AddTicks(10) })).Items;
        Assert.DoesNotContain(after, e => seeded.Contains(e.Id));
        Assert.Equal(3, after.Count);   // the three added while paging
    }

    [DatabaseFact]
    public async Task ListToolExecutionsAndSessions_CreatedBounds_ReturnOnlyRowsInTheRange()
    {
        await using var client = db.CreateClient();
        var tenant = $"t-{Guid.NewGuid():N}";
        var metadata = new Dictionary<string, object?> { ["tenant"] = tenant };
        var first = await client.NewSessionAsync(metadata: metadata);
        var second = await client.NewSessionAsync(metadata: metadata);
        var run = await db.Seed.RunAsync(first);
        var iteration = await db.Seed.ToolIterationAsync(run, toolExecutions: 2);
        var early = await db.Seed.ToolExecutionAsync(run, iteration, "toolu_a", "search");
        var late = await db.Seed.ToolExecutionAsync(run, iteration, "toolu_b", "search");
        await db.ExecuteAsync("UPDATE {schema}.agentpg_tool_executions SET created_at = created_at - interval '1 hour' WHERE id = $1", early);
        await db.ExecuteAsync("UPDATE {schema}.agentpg_sessions SET created_at = created_at - interval '1 hour' WHERE id = $1", first);
        var boundary = DateTimeOffset.UtcNow.AddMinutes(-30);

        async Task<List<Guid>> ExecutionsAsync(ToolExecutionQuery query)
            => [.. (await client.ListToolExecutionsAsync(query with { RunId = run, SessionMetadata = metadata })).Items.Select(e => e.Id)];

        Assert.Equal([late, early], await ExecutionsAsync(new ToolExecutionQuery()));
        Assert.Equal([late], await ExecutionsAsync(new ToolExecutionQuery { CreatedAfter = boundary }));
        Assert.Equal([early], await ExecutionsAsync(new ToolExecutionQuery { CreatedBefore = boundary }));

        var before = await client.ListSessionsAsync(new SessionQuery { Metadata = metadata, CreatedBefore = boundary });
        Assert.Equal([first], before.Items.Select(s => s.Id));
        var since = await client.ListSessionsAsync(new SessionQuery { Metadata = metadata, CreatedAfter = boundary });
        Assert.Equal([second], since.Items.Select(s => s.Id));
    }

    [DatabaseFact]
    public async Task ListSessionsAsync_PagingWhileSessionsAreCreated_ShowsEveryEarlierSessionOnce()
    {
        await using var client = db.CreateClient();
        var metadata = new Dictionary<string, object?> { ["tenant"] = $"t-{Guid.NewGuid():N}" };
        var seeded = new List<Guid>();
        for (var i = 0; i < 7; i++)
        {
            seeded.Add(await client.NewSessionAsync(metadata: metadata));
        }

        var seen = new List<Guid>();
        string? cursor = null;
        do
        {
            var page = await client.ListSessionsAsync(new SessionQuery { Metadata = metadata, Limit = 3, Cursor = cursor });
            seen.AddRange(page.Items.Select(s => s.Id));
            cursor = page.NextCursor;
            await client.NewSessionAsync(metadata: metadata);
        }
        while (cursor is not null);

        Assert.Equal(seeded.Count, seen.Count);
        Assert.Equal(seeded.ToHashSet(), seen.ToHashSet());
    }
}
