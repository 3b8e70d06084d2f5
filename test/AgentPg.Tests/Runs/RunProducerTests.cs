using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>Creating runs with clients that are never started (producers); no worker ever touches this schema.</summary>
public sealed class RunProducerTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task RunFastAsync_UnknownSessionOrAgent_ThrowsNotFound()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();

        var noSession = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RunFastAsync(Guid.NewGuid(), agent.Id, "hi"));
        var noAgent = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RunFastAsync(session, Guid.NewGuid(), "hi"));

        Assert.Equal(AgentPgErrorCode.SessionNotFound, noSession.Code);
        Assert.Equal(AgentPgErrorCode.AgentNotFound, noAgent.Code);
        await Assert.ThrowsAsync<ArgumentException>(() => h.Client.RunFastAsync(session, agent.Id, "  "));
    }

    [DatabaseFact]
    public async Task RunFastAsync_SameIdempotencyKey_ReturnsTheFirstRun()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var options = new RunOptions { IdempotencyKey = "order-7-summary" };

        var first = await h.Client.RunFastAsync(session, agent.Id, "Summarize order 7", options);
        var second = await h.Client.RunFastAsync(session, agent.Id, "Summarize order 7", options);
        var concurrent = await Task.WhenAll(Enumerable.Range(0, 5).Select(_ => Task.Run(() => h.Client.RunFastAsync(session, agent.Id, "Summarize order 7", options))));

        Assert.Equal(first, second);
        Assert.All(concurrent, id => Assert.Equal(first, id));
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));
        Assert.Equal("order-7-summary", (await h.Client.GetRunAsync(first)).IdempotencyKey);

        // Another session may use the same key.
        var otherSession = await h.Client.NewSessionAsync();
        Assert.NotEqual(first, await h.Client.RunFastAsync(otherSession, agent.Id, "Summarize order 7", options));
    }

    [DatabaseFact]
    public async Task RunFastAsync_SameIdempotencyKeyDifferentPrompt_ThrowsIdempotencyConflict()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var options = new RunOptions { IdempotencyKey = "k1" };
        var first = await h.Client.RunFastAsync(session, agent.Id, "one", options);

        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.RunFastAsync(session, agent.Id, "two", options));

        Assert.Equal(AgentPgErrorCode.IdempotencyConflict, ex.Code);
        Assert.Equal(first, ex.RunId);
    }

    [DatabaseFact]
    public async Task SameIdempotencyKey_DifferentRequest_ThrowsIdempotencyConflictSayingWhat()
    {
        // Before, only the agent and the prompt were compared: a repeat with other variables (another tenant's), other
        // instructions or in the other mode silently got the first run, as if the caller's change had been applied.
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        RunOptions Options(int tenant, string region = "eu", string? append = null) => new()
        {
            IdempotencyKey = "order-9",
            Variables = new Dictionary<string, object?> { ["tenant"] = tenant, ["region"] = region },
            AppendInstructions = append,
        };
        var first = await h.Client.RunFastAsync(session, agent.Id, "Summarize order 9", Options(1));

        async Task<string> ConflictAsync(Func<Task<Guid>> repeat)
        {
            var ex = await Assert.ThrowsAsync<AgentPgException>(repeat);
            Assert.Equal(AgentPgErrorCode.IdempotencyConflict, ex.Code);
            Assert.Equal(first, ex.RunId);
            return ex.Message;
        }

        Assert.Contains("RunOptions.Variables", await ConflictAsync(() => h.Client.RunFastAsync(session, agent.Id, "Summarize order 9", Options(2))),
            StringComparison.Ordinal);
        Assert.Contains("AppendInstructions", await ConflictAsync(
            () => h.Client.RunFastAsync(session, agent.Id, "Summarize order 9", Options(1, append: "Be brief."))), StringComparison.Ordinal);
        Assert.Contains("mode (RunFastAsync first)", await ConflictAsync(() => h.Client.RunAsync(session, agent.Id, "Summarize order 9", Options(1))),
            StringComparison.Ordinal);

        // The same request is recognised whatever the order of its variables.
        var reordered = new RunOptions
        {
            IdempotencyKey = "order-9",
            Variables = new Dictionary<string, object?> { ["region"] = "eu", ["tenant"] = 1 },
        };
        Assert.Equal(first, await h.Client.RunFastAsync(session, agent.Id, "Summarize order 9", reordered));
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));
    }

    [DatabaseFact]
    public async Task RunFastAsync_Variables_AreStoredAndReadBack()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();

        var id = await h.Client.RunFastAsync(session, agent.Id, "hi", new RunOptions
        {
            Variables = new Dictionary<string, object?> { ["tenant"] = 42, ["name"] = "acme" },
            OverrideInstructions = "Override.",
            AppendInstructions = "Append.",
        });

        var run = await h.Client.GetRunAsync(id);
        Assert.Equal(42L, run.Variables["tenant"]);
        Assert.Equal("acme", run.Variables["name"]);
        Assert.Equal("Override.", run.OverrideInstructions);
        Assert.Equal("Append.", run.AppendInstructions);
        Assert.Equal(RunState.Pending, run.State);
        Assert.Equal(RunMode.Streaming, run.RunMode);
        Assert.Equal(h.Client.InstanceId, run.CreatedByInstanceId);
    }
    [DatabaseFact]
    public async Task Reject_SessionWithAnActiveRun_ThrowsSessionBusy()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        await h.Client.RunFastAsync(session, agent.Id, "first");

        var ex = await Assert.ThrowsAsync<AgentPgException>(() =>
            h.Client.RunFastAsync(session, agent.Id, "second", new RunOptions { ConcurrencyPolicy = ConcurrencyPolicy.Reject }));

        Assert.Equal(AgentPgErrorCode.SessionBusy, ex.Code);
        Assert.Equal(session, ex.SessionId);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));

        // An idle session accepts it.
        var idle = await h.Client.NewSessionAsync();
        await h.Client.RunFastAsync(idle, agent.Id, "ok", new RunOptions { ConcurrencyPolicy = ConcurrencyPolicy.Reject });
    }

    [DatabaseFact]
    public async Task Reject_ConcurrentCreators_OnlyOneRunIsAccepted()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();

        var attempts = await Task.WhenAll(Enumerable.Range(0, 6).Select(i => Task.Run(async () =>
        {
            try
            {
                await h.Client.RunFastAsync(session, agent.Id, "p" + i, new RunOptions { ConcurrencyPolicy = ConcurrencyPolicy.Reject });
                return true;
            }
            catch (AgentPgException e) when (e.Code == AgentPgErrorCode.SessionBusy)
            {
                return false;
            }
        })));

        Assert.Equal(1, attempts.Count(accepted => accepted));
    }
}
