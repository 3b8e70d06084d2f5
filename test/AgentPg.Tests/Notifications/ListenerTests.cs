using System.Collections.Concurrent;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Notifications;

public sealed class ListenerTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task ListenConnectionKilled_ReconnectsAndNewRunsArePickedUpPromptly()
    {
        // Polling is slowed down so that only notifications can explain a prompt pickup.
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.RunPollInterval = TimeSpan.FromMinutes(2);
            o.ToolPollInterval = TimeSpan.FromMinutes(2);
        });
        var agent = await h.AgentAsync();
        h.Claude.Respond(request => FakeReply.Text("answer to " + request.LastUserText));
        var appName = "agentpg-listen:" + h.Client.InstanceId;
        // StartAsync waits for the first LISTEN for 5 s only, then goes on while the listener keeps connecting.
        int? before = null;
        await Eventually.TrueAsync(async () => (before = await ListenerPidAsync(appName)) is not null, "the LISTEN connection");

        // Work before the kill, to prove the path works at all.
        Assert.Equal("answer to one", (await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "one")).Text);

        await db.ScalarAsync<bool>("SELECT pg_terminate_backend($1)", before!.Value);
        // A run created while the listener is down is found by the catch-up poll after the reconnect.
        var whileDown = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "two");

        await Eventually.TrueAsync(async () => await ListenerPidAsync(appName) is { } pid && pid != before, "the LISTEN connection is re-established", TimeSpan.FromSeconds(20));
        Assert.Equal("answer to two", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(whileDown), "the run created while disconnected", TimeSpan.FromSeconds(20))).Text);

        // And new runs are dispatched by notification again, well within the 2-minute poll interval.
        var started = DateTime.UtcNow;
        var three = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "three"), "a run after the reconnect", TimeSpan.FromSeconds(20));
        Assert.Equal("answer to three", three.Text);
        Assert.True(DateTime.UtcNow - started < TimeSpan.FromSeconds(10));
    }

    [DatabaseFact]
    public async Task WaitForRunAsync_OnAProducerClient_WakesOnTheFinalizedNotification()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        // The producer polls only every 2 minutes: the notification must wake it.
        var producer = await h.AddClientAsync(o => o.RunPollInterval = TimeSpan.FromMinutes(2), start: false);
        h.Claude.Enqueue(FakeReply.Text("from the worker"));

        var run = await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, "hi");
        var response = await Eventually.WithinAsync(producer.WaitForRunAsync(run), "the producer's wait", TimeSpan.FromSeconds(20));

        Assert.Equal("from the worker", response.Text);
        // Waiting again after the end returns at once.
        Assert.Equal("from the worker", (await producer.WaitForRunAsync(run)).Text);
    }

    [DatabaseFact]
    public async Task NotificationsSentAfterCommit_EveryOneArrives_OneRunAfterAnotherAndInABurst()
    {
        // Worker and producer poll every 10 minutes: each run starts on its agentpg_run_created notification and each wait
        // ends on its agentpg_run_finalized notification, both sent after the commit by the clients' coalescing senders.
        await using var h = await Harness.StartAsync(db, o => o.RunPollInterval = TimeSpan.FromMinutes(10));
        var producer = await h.AddClientAsync(o => o.RunPollInterval = TimeSpan.FromMinutes(10), start: false);
        var agent = await h.AgentAsync();
        h.Claude.Respond(request => FakeReply.Text("re: " + request.LastUserText));

        for (var i = 0; i < 20; i++)
        {
            var run = await producer.RunFastAsync(await producer.NewSessionAsync(), agent.Id, "one " + i);
            Assert.Equal("re: one " + i, (await Eventually.WithinAsync(producer.WaitForRunAsync(run), $"run {i} of the sequence")).Text);
        }

        var sessions = await Task.WhenAll(Enumerable.Range(0, 30).Select(_ => producer.NewSessionAsync()));
        var burst = await Task.WhenAll(sessions.Select((session, i) => producer.RunFastAsync(session, agent.Id, "burst " + i)));
        var responses = await Eventually.WithinAsync(Task.WhenAll(burst.Select(run => producer.WaitForRunAsync(run))), "the burst");
        Assert.Equal(Enumerable.Range(0, 30).Select(i => "re: burst " + i), responses.Select(r => r.Text));
    }

    [DatabaseFact]
    public async Task RunFinalized_CarriesTheSessionsNextRunMode_OnlyWhenARunWaits()
    {
        // Read the agentpg_run_finalized payloads as any listener would.
        var payloads = new ConcurrentDictionary<Guid, JsonElement>();
        await using var listen = await TestDatabase.DataSource.OpenConnectionAsync();
        listen.Notification += (_, e) =>
        {
            using var doc = JsonDocument.Parse(e.Payload);
            payloads[Guid.Parse(doc.RootElement.GetProperty("run_id").GetString()!)] = doc.RootElement.Clone();
        };
        await using (var command = new NpgsqlCommand($"LISTEN \"{db.Schema}.agentpg_run_finalized\"", listen))
        {
            await command.ExecuteNonQueryAsync();
        }

        using var stopListening = new CancellationTokenSource();
        var pump = Task.Run(async () =>
        {
            try
            {
                while (true)
                {
                    await listen.WaitAsync(stopListening.Token);
                }
            }
            catch (OperationCanceledException)
            {
            }
        });

        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        var releases = new ConcurrentDictionary<string, TaskCompletionSource>();
        var arrived = new ConcurrentDictionary<string, TaskCompletionSource>();
        h.Claude.Respond(async (request, ct) =>
        {
            arrived.GetOrAdd(request.LastUserText!, _ => new()).TrySetResult();
            if (releases.TryGetValue(request.LastUserText!, out var release))
            {
                await release.Task.WaitAsync(ct);
            }

            return FakeReply.Text("re: " + request.LastUserText);
        });

        // Completed by the worker (notification sent after the commit) with nothing queued behind it.
        var alone = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "alone");
        await h.Client.WaitForRunAsync(alone);

        // Completed by the worker with a run queued behind it, then that run.
        var session = await h.Client.NewSessionAsync();
        releases["first"] = new();
        var first = await h.Client.RunFastAsync(session, agent.Id, "first");
        await Eventually.WithinAsync(arrived.GetOrAdd("first", _ => new()).Task, "the first run's request");
        var second = await h.Client.RunFastAsync(session, agent.Id, "second");
        releases["first"].SetResult();
        await h.Client.WaitForRunAsync(second);

        // Cancelled (notification sent by the trigger) with a run queued behind it.
        var other = await h.Client.NewSessionAsync();
        releases["third"] = new();
        var third = await h.Client.RunFastAsync(other, agent.Id, "third");
        await Eventually.WithinAsync(arrived.GetOrAdd("third", _ => new()).Task, "the third run's request");
        var fourth = await h.Client.RunFastAsync(other, agent.Id, "fourth");
        await h.Client.CancelRunAsync(third);
        await h.Client.WaitForRunAsync(fourth);

        await Eventually.TrueAsync(() => new[] { alone, first, second, third, fourth }.All(payloads.ContainsKey), "every run's finalized notification");
        await stopListening.CancelAsync();
        await pump;

        string? Next(Guid run) => payloads[run].GetProperty("next_run_mode").ValueKind == JsonValueKind.Null ? null : payloads[run].GetProperty("next_run_mode").GetString();
        Assert.Null(Next(alone));
        Assert.Equal("streaming", Next(first));
        Assert.Null(Next(second));
        Assert.Equal("cancelled", payloads[third].GetProperty("state").GetString());
        Assert.Equal("streaming", Next(third));
        Assert.Null(Next(fourth));
    }

    [DatabaseFact]
    public async Task Stop_OnAPoolWithoutReset_LeavesNoPooledConnectionListeningOrNamedAsTheListener()
    {
        // No Reset On Close (docs/hosting.md recommends it): Npgsql no longer sends UNLISTEN * and RESET ALL when a pooled
        // connection is reused, so the listener must undo its LISTENs and its name itself before its connection goes back.
        var connection = new NpgsqlConnectionStringBuilder(db.DataSource.ConnectionString) { NoResetOnClose = true, MaxPoolSize = 4 };
        await using var dataSource = NpgsqlDataSource.Create(connection.ConnectionString);
        var client = AgentPgClient.Create(dataSource, db.Options());
        await client.StartAsync();
        var appName = "agentpg-listen:" + client.InstanceId;
        await Eventually.TrueAsync(async () => await ListenerPidAsync(appName) is not null, "the LISTEN connection");

        await client.DisposeAsync();

        // Every physical connection of the pool at once (at most MaxPoolSize exist): the listener's is among them.
        var pooled = new List<NpgsqlConnection>();
        try
        {
            for (var i = 0; i < connection.MaxPoolSize; i++)
            {
                pooled.Add(await dataSource.OpenConnectionAsync());
            }

            foreach (var c in pooled)
            {
                await using var command = new NpgsqlCommand("SELECT (SELECT count(*) FROM pg_listening_channels()), current_setting('application_name')", c);
                await using var reader = await command.ExecuteReaderAsync();
                Assert.True(await reader.ReadAsync());
                Assert.Equal(0L, reader.GetInt64(0));
                Assert.NotEqual(appName, reader.GetString(1));
            }
        }
        finally
        {
            foreach (var c in pooled)
            {
                await c.DisposeAsync();
            }
        }
    }

    [DatabaseFact]
    public async Task WaitForRunAsync_UnknownRun_ThrowsRunNotFound()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var ex = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WaitForRunAsync(Guid.NewGuid()));
        Assert.Equal(AgentPgErrorCode.RunNotFound, ex.Code);
    }

    private async Task<int?> ListenerPidAsync(string applicationName)
    {
        await using var command = db.DataSource.CreateCommand("SELECT pid FROM pg_stat_activity WHERE application_name = $1");
        command.Parameters.Add(new Npgsql.NpgsqlParameter { Value = applicationName });
        return await command.ExecuteScalarAsync() as int?;
    }
}
