using AgentPg.Maintenance;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Runs;

/// <summary>agentpg_run_queue: one row per active run, kept in step with the run row by triggers, so that no index of
/// agentpg_runs names state and the run row's claim and completion are HOT updates.</summary>
public sealed class RunQueueTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task ClaimAndCompletion_AreHotUpdatesOfTheRunRow()
    {
        var engine = TestEngine.Create(db, "queue-hot");
        // A batch run: the other tests of the class leave streaming runs pending, which this claim must not take.
        var run = await db.Seed.RunAsync(mode: "batch", prompt: "hello");

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        // The backend's counts not yet reported (this transaction's and earlier ones'): nothing is reported inside a transaction.
        var runs = $"'\"{db.Schema}\".agentpg_runs'::regclass";
        var counts = $"SELECT ARRAY[pg_stat_get_xact_tuples_updated({runs}), pg_stat_get_xact_tuples_hot_updated({runs})]";
        var before = await ScalarAsync<long[]>(connection, counts);
        Assert.Equal(1L, await ScalarAsync<long>(connection, $"SELECT count(*) FROM \"{db.Schema}\".agentpg_claim_runs('queue-hot', 10, 'batch')"));
        await using (var complete = new NpgsqlCommand(engine.Sql.Runs.Complete, connection))
        {
            complete.Parameters.Add(new NpgsqlParameter { Value = run });
            complete.Parameters.Add(new NpgsqlParameter { Value = "answer" });
            complete.Parameters.Add(new NpgsqlParameter { Value = "end_turn" });
            for (var i = 0; i < 4; i++)
            {
                complete.Parameters.Add(new NpgsqlParameter { Value = 1 });
            }

            await complete.ExecuteNonQueryAsync();
        }

        // Two updates of the run row, the claim and the completion, both HOT: no new index entry.
        var after = await ScalarAsync<long[]>(connection, counts);
        Assert.Equal([2L, 2L], after.Zip(before, (a, b) => a - b));
        await transaction.CommitAsync();

        Assert.Equal("completed", await db.ScalarAsync<string>("SELECT state::text FROM {schema}.agentpg_runs WHERE id = $1", run));
        Assert.Null(await QueueStateAsync(run));
        await AssertQueueMatchesRunsAsync();
    }

    [DatabaseFact]
    public async Task Schema_NoIndexOfTheRunsNamesAColumnTheHotPathChanges()
    {
        // Columns an index of agentpg_runs may name: none of them changes after the insert (root_run_id is set by it, for the
        // token budget's tree), but error_type, which changes only when a run fails or is cancelled.
        string[] allowed = ["id", "session_id", "idempotency_key", "agent_id", "parent_run_id", "root_run_id", "created_at", "error_type"];
        var named = await db.ScalarAsync<string[]>("""
            SELECT coalesce(array_agg(DISTINCT a.attname ORDER BY a.attname), '{}')
              FROM pg_index x
              JOIN pg_attribute a ON a.attrelid = x.indrelid
             WHERE x.indrelid = '{schema}.agentpg_runs'::regclass
               AND (a.attnum = ANY (x.indkey)
                    OR pg_get_expr(x.indpred, x.indrelid) ~ ('\m' || a.attname || '\M')
                    OR pg_get_expr(x.indexprs, x.indrelid) ~ ('\m' || a.attname || '\M'))
               AND a.attnum > 0 AND NOT a.attisdropped
            """);

        Assert.Empty(named.Except(allowed));
    }

    [DatabaseTheory]
    [InlineData("completed")]
    [InlineData("failed")]
    [InlineData("cancelled")]
    public async Task QueueRow_FollowsTheRunThroughItsStates_AndLeavesAtTheEnd(string terminal)
    {
        var run = await db.Seed.RunAsync();
        Assert.Equal("pending", await QueueStateAsync(run));

        await db.Seed.ClaimRunAsync(run, "queue-life", TimeSpan.Zero);
        Assert.Equal("streaming", await QueueStateAsync(run));
        await db.Seed.ToolIterationAsync(run);
        Assert.Equal("pending_tools", await QueueStateAsync(run));
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET state = 'pending' WHERE id = $1", run);
        Assert.Equal("pending", await QueueStateAsync(run));
        await AssertQueueMatchesRunsAsync();

        await db.Seed.FinishRunAsync(run, terminal);

        Assert.Null(await QueueStateAsync(run));
        await AssertQueueMatchesRunsAsync();
    }

    [DatabaseFact]
    public async Task Cancel_PendingRootRun_RemovesItsQueueRowAndTheSessionsNextRunBecomesClaimable()
    {
        var session = await db.Seed.SessionAsync();
        var agent = await db.Seed.AgentAsync();
        var first = await db.Seed.RunAsync(session, agent);
        var second = await db.Seed.RunAsync(session, agent);
        await using var client = db.CreateClient();

        await client.CancelRunAsync(first);

        Assert.Null(await QueueStateAsync(first));
        Assert.Equal("pending", await QueueStateAsync(second));
        Assert.Equal([second], (await ClaimAsync("queue-cancel")).Intersect([first, second]));
        Assert.Equal("streaming", await QueueStateAsync(second));
        await AssertQueueMatchesRunsAsync();
    }

    [DatabaseFact]
    public async Task Claim_OlderActiveRootRunOfTheSession_HoldsTheNextOneBack()
    {
        var session = await db.Seed.SessionAsync();
        var agent = await db.Seed.AgentAsync();
        var first = await db.Seed.RunAsync(session, agent);
        var second = await db.Seed.RunAsync(session, agent);

        Assert.Equal([first], (await ClaimAsync("queue-order")).Intersect([first, second]));
        Assert.Empty((await ClaimAsync("queue-order")).Intersect([first, second]));

        await db.Seed.FinishRunAsync(first);
        Assert.Equal([second], (await ClaimAsync("queue-order")).Intersect([first, second]));
        await AssertQueueMatchesRunsAsync();
    }

    [DatabaseFact]
    public async Task Rescue_RunOfADeadInstance_IsPendingInTheQueueAgainAndClaimable()
    {
        var engine = TestEngine.Create(db, "queue-rescuer");
        await db.Seed.LeaseAsync("queue-rescuer");
        var run = await db.Seed.RunAsync();
        await db.Seed.DeadInstanceAsync("queue-dead");
        await db.Seed.ClaimRunAsync(run, "queue-dead", TimeSpan.FromHours(1));

        await new RunRescuer(engine).RunAsync(CancellationToken.None);

        Assert.Equal("pending", await QueueStateAsync(run));
        Assert.Contains(run, await ClaimAsync("queue-rescuer"));
        await AssertQueueMatchesRunsAsync();
    }

    [DatabaseFact]
    public async Task RolledBackRunCreation_LeavesNoQueueRow()
    {
        var session = await db.Seed.SessionAsync();
        var agent = await db.Seed.AgentAsync();
        await using var client = db.CreateClient();
        await using var connection = await db.DataSource.OpenConnectionAsync();
        Guid run;
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            run = await client.RunFastAsync(transaction, session, agent, "never");
            Assert.Equal(1L, await ScalarAsync<long>(connection, $"SELECT count(*) FROM \"{db.Schema}\".agentpg_run_queue WHERE run_id = '{run}'"));
            await transaction.RollbackAsync();
        }

        Assert.Null(await QueueStateAsync(run));
        await AssertQueueMatchesRunsAsync();
    }

    [DatabaseFact]
    public async Task DeletingTheSession_RemovesTheQueueRowsOfItsRuns()
    {
        var session = await db.Seed.SessionAsync();
        var pending = await db.Seed.RunAsync(session);
        var finished = await db.Seed.RunAsync(session);
        await db.Seed.FinishRunAsync(finished);

        await db.ExecuteAsync("DELETE FROM {schema}.agentpg_sessions WHERE id = $1", session);

        Assert.Null(await QueueStateAsync(pending));
        await AssertQueueMatchesRunsAsync();
    }

    [DatabaseFact]
    public async Task ListRuns_FailedRunWithoutAnErrorTypeByHand_IsListedAmongTheFailedRuns()
    {
        var session = await db.Seed.SessionAsync();
        var failed = await db.Seed.RunAsync(session);
        var completed = await db.Seed.RunAsync(session);
        await db.Seed.FinishRunAsync(failed, "failed");
        await db.Seed.FinishRunAsync(completed);
        await using var client = db.CreateClient();

        var page = await client.ListRunsAsync(new RunQuery { SessionId = session, States = [RunState.Failed] });

        Assert.Equal([failed], page.Items.Select(r => r.Id));
        Assert.Equal("processing_error", page.Items.Single().ErrorType);
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1 AND error_type IS NOT NULL", session));
    }

    private Task<string?> QueueStateAsync(Guid run)
        => db.ScalarAsync<string?>("SELECT state::text FROM {schema}.agentpg_run_queue WHERE run_id = $1", run);

    // Claims every claimable streaming run of the schema (other tests of the class leave some): compare the ones a test made.
    private async Task<Guid[]> ClaimAsync(string instance)
        => await db.ScalarAsync<Guid[]>("SELECT coalesce(array_agg(id), '{}') FROM {schema}.agentpg_claim_runs($1, 10, 'streaming')", instance);

    // Every active run has exactly its queue row (same state, session, position, mode, root flag); no other queue row exists.
    private async Task AssertQueueMatchesRunsAsync()
    {
        var mismatches = await db.ScalarAsync<long>("""
            SELECT count(*)
              FROM {schema}.agentpg_runs r
              FULL JOIN {schema}.agentpg_run_queue q ON q.run_id = r.id
             WHERE r.id IS NULL
                OR (q.run_id IS NULL) <> (r.state IN ('completed', 'cancelled', 'failed'))
                OR (q.run_id IS NOT NULL AND (q.state <> r.state OR q.session_id <> r.session_id OR q.seq <> r.seq
                                              OR q.run_mode <> r.run_mode OR q.is_root <> (r.parent_run_id IS NULL)))
            """);
        Assert.Equal(0L, mismatches);
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        return (T)(await command.ExecuteScalarAsync())!;
    }
}
