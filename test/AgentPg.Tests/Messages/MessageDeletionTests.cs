using System.Data.Common;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Messages;

/// <summary>Deleting messages (compaction's remove and a restore's summary, a regeneration, a session's deletion) clears
/// the response_message_id of their iterations and finds those iterations by run: it never reads the whole iteration
/// table, which in a database with millions of iterations is one full scan per deleted message.</summary>
public sealed class MessageDeletionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private const string SummarizerPrompt = "You summarise conversations";
    private const int OtherIterations = 5_000;

    // Iterations read (sequentially or through an index) that are few: the session's own are a handful; a scan of the table
    // (or of a whole index) reads every one of the others.
    private const long Few = OtherIterations / 10;
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);
    private readonly string _applicationName = "msgdel_" + Guid.NewGuid().ToString("N")[..10];

    private static readonly CompactionOptions s_summarize = new()
    {
        Strategy = CompactionStrategy.Summarization,
        ProtectedTokens = 50,
        PreserveLastN = 2,
        TargetTokens = 100,
        MaxTokensForModel = 200_000,
        UseTokenCountingApi = true,
    };

    [DatabaseFact]
    public async Task DeleteSession_AmongThousandsOfOtherIterations_DeletesItsIterationsWithoutScanningTheTable()
    {
        await OtherIterationsAsync();
        await using var dataSource = Unpooled();
        var (h, client, session) = await ConversationAsync(dataSource, turns: 2);
        await using var _ = h;

        await using var connection = await db.DataSource.OpenConnectionAsync();
        await using var transaction = await connection.BeginTransactionAsync();
        await client.DeleteSessionAsync(transaction, session);
        var read = await IterationsReadInTransactionAsync(connection, transaction);
        await transaction.CommitAsync();

        Assert.True(read < Few, $"deleting a session of 2 runs read {read} iterations");
        Assert.Equal(0L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_iterations i WHERE NOT EXISTS (SELECT 1 FROM {schema}.agentpg_runs r WHERE r.id = i.run_id)"));
        Assert.Equal(0L, await DanglingAsync());
    }

    [DatabaseFact]
    public async Task RegenerateRun_AmongThousandsOfOtherIterations_UnlinksTheRunsIterationsWithoutScanningTheTable()
    {
        await OtherIterationsAsync();
        await using var dataSource = Unpooled();
        var (h, client, session) = await ConversationAsync(dataSource, turns: 2);
        await using var _ = h;
        var messages = await client.GetMessagesAsync(session);
        var last = messages[^1].RunId!.Value;
        Assert.Equal(1L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_iterations WHERE run_id = $1 AND response_message_id IS NOT NULL", last));

        // The deletion a regeneration makes (agentpg_delete_run_messages), in a transaction of the test's to count its scans.
        await using (var connection = await db.DataSource.OpenConnectionAsync())
        {
            await using var transaction = await connection.BeginTransactionAsync();
            await using var delete = new NpgsqlCommand($"SELECT \"{db.Schema}\".agentpg_delete_run_messages($1)", connection, transaction)
            {
                Parameters = { new() { Value = last } },
            };
            Assert.Equal(2, (int)(await delete.ExecuteScalarAsync())!);
            var read = await IterationsReadInTransactionAsync(connection, transaction);
            Assert.True(read < Few, $"deleting the messages of one run read {read} iterations");
            await transaction.RollbackAsync();
        }

        var regenerated = await client.RegenerateRunAsync(last);
        await Eventually.WithinAsync(client.WaitForRunAsync(regenerated), "the regenerated run", s_timeout);

        Assert.Equal(0L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_iterations WHERE run_id = $1 AND response_message_id IS NOT NULL", last));
        Assert.Equal(1L, await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_iterations WHERE run_id = $1 AND response_message_id IS NOT NULL", regenerated));
        Assert.Equal(0L, await DanglingAsync());
    }

    [DatabaseFact]
    public async Task CompactAndRestore_AmongThousandsOfOtherIterations_UnlinkAndRelinkTheIterationsWithoutScanningTheTable()
    {
        await OtherIterationsAsync();
        await using var dataSource = Unpooled();
        var (h, client, session) = await ConversationAsync(dataSource, turns: 5);
        await using var _ = h;
        await client.StopAsync();

        // The compaction, the restore and the test's own queries through connections that are not pooled: each connection's
        // backend ends when it is closed, and a backend's statistics reach pg_stat_user_tables before it leaves
        // pg_stat_activity, so once none is left every row they read is counted (the client that ran the turns is
        // stopped: its leader's sweeps read iterations too).
        await using var compactor = db.CreateClient(dataSource, o => { o.ApiKey = h.Claude.ApiKey; o.BaseUrl = h.Claude.BaseUrl; });
        var links = await LinksAsync(dataSource, session);
        Assert.Equal(5, links.Count);
        await EndedAsync();
        var before = await IterationsReadAsync();

        var compaction = await compactor.CompactAsync(session, s_summarize);
        Assert.True(compaction.MessagesRemoved > 0);
        var unlinked = await LinksAsync(dataSource, session);
        Assert.True(unlinked.Count < links.Count, "the compaction removed no answer of an iteration");
        Assert.All(unlinked, l => Assert.Equal(links[l.Key], l.Value));
        await compactor.RestoreCompactionAsync(compaction.EventId);
        await EndedAsync();

        var read = await IterationsReadAsync() - before;

        // Reading the links twice is two index scans of the session's iterations: a handful of rows.
        Assert.True(read < Few, $"a compaction of {compaction.MessagesRemoved} messages and its restore read {read} iterations");
        Assert.Equal(links, await LinksAsync(dataSource, session));
        Assert.Equal(0L, await DanglingAsync());
    }

    // Completed runs of another session with ten iterations each, and statistics that say so: a planner that can look the
    // iterations of a run up by an index does.
    private async Task OtherIterationsAsync()
    {
        var session = await db.Seed.SessionAsync();
        var agent = await db.Seed.AgentAsync();
        await db.ExecuteAsync(
            "INSERT INTO {schema}.agentpg_runs (session_id, agent_id, prompt, run_mode) SELECT $1, $2, 'old', 'streaming' FROM generate_series(1, $3)",
            session, agent, OtherIterations / 10);
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET state = 'completed', started_at = now() WHERE session_id = $1", session);
        await db.ExecuteAsync(
            "INSERT INTO {schema}.agentpg_iterations (run_id, iteration_number, stop_reason, completed_at) " +
            "SELECT r.id, g, 'end_turn', now() FROM {schema}.agentpg_runs r, generate_series(1, 10) g WHERE r.session_id = $1", session);
        await db.ExecuteAsync("ANALYZE {schema}.agentpg_iterations");
    }

    // A started client whose connections are unpooled (its reads of the iteration table reported once it is stopped and
    // EndedAsync returned), and a session of that many turns.
    private async Task<(Harness H, AgentPgClient Client, Guid Session)> ConversationAsync(NpgsqlDataSource dataSource, int turns)
    {
        var h = await Harness.StartAsync(db, start: false);
        var client = await h.AddClientAsync(dataSource);
        h.Claude.Respond(request => FakeReply.Text(
            request.SystemText.StartsWith(SummarizerPrompt, StringComparison.Ordinal) ? "SUMMARY of the earlier turns" : "answer to: " + request.LastUserText));
        var agent = await client.CreateAgentAsync(new AgentDefinition
        {
            Name = "agent_" + Guid.NewGuid().ToString("N")[..10],
            Model = "claude-sonnet-4-5",
            SystemPrompt = "You are a test agent.",
        });
        var session = await client.NewSessionAsync();
        for (var i = 0; i < turns; i++)
        {
            await Eventually.WithinAsync(client.RunFastSyncAsync(session, agent.Id, $"question {i} " + new string('q', 200)), $"turn {i}", s_timeout);
        }

        return (h, client, session);
    }

    // Each iteration of the session that points at a message, and that message.
    private async Task<Dictionary<Guid, Guid>> LinksAsync(NpgsqlDataSource dataSource, Guid session)
    {
        var links = new Dictionary<Guid, Guid>();
        await using var command = dataSource.CreateCommand(
            $"SELECT i.id, i.response_message_id FROM \"{db.Schema}\".agentpg_iterations i JOIN \"{db.Schema}\".agentpg_runs r ON r.id = i.run_id " +
            "WHERE r.session_id = $1 AND i.response_message_id IS NOT NULL");
        command.Parameters.Add(new() { Value = session });
        await using var reader = await command.ExecuteReaderAsync();
        while (await reader.ReadAsync())
        {
            links.Add(reader.GetGuid(0), reader.GetGuid(1));
        }

        return links;
    }

    // The test's own reads of the iteration table go through connections of their own, not pooled, so they have reported
    // their statistics once EndedAsync returns.
    private NpgsqlDataSource Unpooled() => TestDatabase.CreateDataSource(b => { b.ApplicationName = _applicationName; b.Pooling = false; });

    // Every backend of the unpooled connections has ended, its statistics reported.
    private Task EndedAsync() => Eventually.TrueAsync(
        async () => await db.ScalarAsync<long>("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", _applicationName) == 0,
        "the unpooled connections' backends ended", s_timeout);

    // Iterations that point at a message that does not exist (a scan of the whole table).
    private async Task<long> DanglingAsync()
    {
        await using var dataSource = Unpooled();
        await using var command = dataSource.CreateCommand(
            $"SELECT count(*) FROM \"{db.Schema}\".agentpg_iterations i WHERE i.response_message_id IS NOT NULL " +
            $"AND NOT EXISTS (SELECT 1 FROM \"{db.Schema}\".agentpg_messages m WHERE m.id = i.response_message_id)");
        return (long)(await command.ExecuteScalarAsync())!;
    }

    // Rows of agentpg_iterations read so far, by sequential scans and index scans (the counts other backends reported).
    private Task<long> IterationsReadAsync() => db.ScalarAsync<long>(
        "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_user_tables WHERE relid = $1::regclass", $"\"{db.Schema}\".agentpg_iterations");

    // Rows of agentpg_iterations the transaction read.
    private async Task<long> IterationsReadInTransactionAsync(NpgsqlConnection connection, DbTransaction transaction)
    {
        await using var command = new NpgsqlCommand(
            "SELECT seq_tup_read + coalesce(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables WHERE relid = $1::regclass", connection,
            (NpgsqlTransaction)transaction)
        {
            Parameters = { new() { Value = $"\"{db.Schema}\".agentpg_iterations" } },
        };
        return (long)(await command.ExecuteScalarAsync())!;
    }
}
