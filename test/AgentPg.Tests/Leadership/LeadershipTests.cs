using System.Collections.Concurrent;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using Npgsql;

namespace AgentPg.Tests.Leadership;

public sealed class LeadershipTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private sealed class LeaderTracker
    {
        private int _current;

        public ConcurrentQueue<string> Events { get; } = new();

        public int MaxConcurrent { get; private set; }

        public AgentPgHooks HooksFor(string name) => new()
        {
            OnBecameLeader = _ =>
            {
                var now = Interlocked.Increment(ref _current);
                lock (this)
                {
                    MaxConcurrent = Math.Max(MaxConcurrent, now);
                }

                Events.Enqueue("became " + name);
                return Task.CompletedTask;
            },
            OnLostLeadership = _ =>
            {
                Interlocked.Decrement(ref _current);
                Events.Enqueue("lost " + name);
                return Task.CompletedTask;
            },
        };

        public int Current => Volatile.Read(ref _current);
    }

    private Task<string?> LeaderInDatabaseAsync()
        => db.ScalarAsync<object>("SELECT coalesce((SELECT leader_id FROM {schema}.agentpg_leader WHERE expires_at > now()), '')")
            .ContinueWith(t => t.Result is string s && s.Length > 0 ? s : null, TaskScheduler.Default);

    [DatabaseFact]
    public async Task ThreeClients_ExactlyOneLeads_AndStoppingItHandsOverWithinOneTtl()
    {
        var tracker = new LeaderTracker();
        // Short enough for a quick test, long enough that a busy machine does not starve the lease refresh (every TTL/2), and
        // that the handover's bound below leaves TTL/2 = 2.5 s for scheduling: with 3 s, one handover beside loaded test
        // classes took 2.2 s of the 3.
        var ttl = TimeSpan.FromSeconds(5);
        var clients = new List<AgentPgClient>();
        foreach (var name in new[] { "a", "b", "c" })
        {
            var client = db.CreateClient(o =>
            {
                o.LeaderTtl = ttl;
                o.Hooks = tracker.HooksFor(name);
            });
            await client.StartAsync();
            clients.Add(client);
        }

        try
        {
            await Eventually.TrueAsync(() => tracker.Current == 1, "one client to lead");
            var leaderId = await LeaderInDatabaseAsync();
            var leader = clients.Single(c => c.InstanceId == leaderId);

            // The leader refreshes its lease twice; nobody else takes it meanwhile.
            var expiresAt = await db.ScalarAsync<DateTime>("SELECT expires_at FROM {schema}.agentpg_leader");
            await Eventually.TrueAsync(async () => await db.ScalarAsync<DateTime>("SELECT expires_at FROM {schema}.agentpg_leader") > expiresAt + ttl * 0.9,
                "the lease to be refreshed twice", ttl * 3);
            Assert.Equal(leaderId, await LeaderInDatabaseAsync());
            Assert.Equal(1, tracker.MaxConcurrent);

            // Stopping resigns at once, and the others try every TTL/2: the next attempt takes over. Without the resign the lease
            // would run out first (up to one TTL after its last refresh). The bound is one TTL, TTL/2 above the attempt period
            // for scheduling, measured on the database's clock from before the stop to the successor's election, so neither
            // the test's polling nor the rest of the stop (which runs after the resign) counts.
            var stopped = await db.ScalarAsync<DateTime>("SELECT now()");
            await leader.StopAsync();
            // The resign itself, on no clock: once StopAsync has returned the lease row is gone or a successor's. Without it the
            // row would stay the stopped leader's until its lease ran out, at least TTL/2 after its last refresh.
            Assert.NotEqual(leaderId, await db.ScalarAsync<string>("SELECT coalesce((SELECT leader_id FROM {schema}.agentpg_leader), '')"));
            await Eventually.TrueAsync(async () => await LeaderInDatabaseAsync() is { } next && next != leaderId, "another client to take over", ttl * 2);
            var elected = await db.ScalarAsync<DateTime>("SELECT elected_at FROM {schema}.agentpg_leader");
            Assert.True(elected - stopped < ttl, $"the handover took {(elected - stopped).TotalSeconds:0.00} s, longer than one lease TTL ({ttl.TotalSeconds} s)");
            await Eventually.TrueAsync(() => tracker.Current == 1, "exactly one believing leader after the handover");
            Assert.Equal(1, tracker.MaxConcurrent);
        }
        finally
        {
            foreach (var client in clients)
            {
                await client.DisposeAsync();
            }
        }
    }

    [DatabaseFact]
    public async Task StoppingWhileWorkDrains_ResignsAtOnce_AndTheSuccessorNeverOverlapsIt()
    {
        var tracker = new LeaderTracker();
        var ttl = TimeSpan.FromSeconds(3);
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.LeaderTtl = ttl;
            o.Hooks = tracker.HooksFor("a");
        });
        var a = h.Client;
        await Eventually.TrueAsync(() => tracker.Current == 1, "A to lead");
        var held = new HeldRequest(h.Claude, "hold the drain", _ => FakeReply.Text("drained"));
        var agent = await h.AgentAsync();
        var run = await a.RunFastAsync(await a.NewSessionAsync(), agent.Id, "hold the drain");
        await Eventually.WithinAsync(held.Arrived, "A to stream the run");
        var b = await h.AddClientAsync(o =>
        {
            o.LeaderTtl = ttl;
            o.Hooks = tracker.HooksFor("b");
        });

        // A stops while it streams: the drain waits for the held request, and A no longer refreshes its lease meanwhile. It
        // must stop leading and resign now, not after the drain: B takes over at its next attempt, never while A still leads.
        // On a starved machine A's 3-s lease can lapse before the stop and A take it again ("became a, lost a, became a"):
        // what this test checks are the events from the stop on, with A leading when it stops.
        await Eventually.TrueAsync(() => tracker.Events.LastOrDefault() == "became a", "A to lead when it stops");
        var before = tracker.Events.Count;
        var stopping = a.StopAsync();
        try
        {
            await Eventually.TrueAsync(() => tracker.Events.Skip(before).Contains("became b"), "B to take over while A drains");
            Assert.False(stopping.IsCompleted, "A's stop waits for the held request");
            Assert.Equal(["lost a", "became b"], tracker.Events.Skip(before).Take(2));
            Assert.Equal(1, tracker.MaxConcurrent);
        }
        finally
        {
            held.Release();
        }

        await Eventually.WithinAsync(stopping, "A's stop after the drain");
        Assert.Equal("drained", (await b.GetRunAsync(run)).ResponseText);
    }

    [DatabaseFact]
    public async Task LeaderThatLosesItsLease_StopsActingAsLeader()
    {
        var tracker = new LeaderTracker();
        await using var client = db.CreateClient(o =>
        {
            o.LeaderTtl = TimeSpan.FromMilliseconds(600);
            o.CleanupInterval = TimeSpan.FromMilliseconds(100);
            o.InstanceTtl = TimeSpan.FromSeconds(5);
            o.Hooks = tracker.HooksFor("only");
        });
        await client.StartAsync();
        await Eventually.TrueAsync(() => tracker.Current == 1, "the client to lead");

        // Another party takes the lease for an hour; the next refresh finds it gone.
        await db.Seed.LeaseAsync("usurper");
        await Eventually.TrueAsync(() => tracker.Events.Contains("lost only"), "the client to notice it lost leadership");

        // A stale instance stays: only a leader with a live lease may evict it.
        await db.Seed.DeadInstanceAsync("ghost");
        var before = await db.ScalarAsync<DateTime>("SELECT last_heartbeat_at FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId);
        await Eventually.TrueAsync(async () => await db.ScalarAsync<DateTime>(
            "SELECT last_heartbeat_at FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId) > before.AddSeconds(1.5), "a few heartbeats (and cleanup ticks) to pass");
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = 'ghost'"));
        Assert.Equal(0, tracker.Current);

        // When the usurper's lease ends, the client leads again and cleans up.
        await db.Seed.ExpireLeaseAsync();
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = 'ghost'") == 0, "the re-elected leader to remove the stale instance");
        Assert.Equal(1, tracker.Current);
    }

    [DatabaseFact]
    public async Task EvictedWhileAlive_ReRegistersItselfAndItsTools()
    {
        await using var client = db.CreateClient(o => o.HeartbeatInterval = TimeSpan.FromMilliseconds(100));
        client.RegisterTool(new TestTool("evicted_tool"));
        await client.StartAsync();

        // Evict it as the leader's cleanup would, and see its tool rows go with it. Both in one transaction: once it commits,
        // the 100 ms heartbeat may register the instance again at any moment, which is what this test waits for next.
        await using (var connection = await db.DataSource.OpenConnectionAsync())
        await using (var transaction = await connection.BeginTransactionAsync())
        {
            await using (var delete = new NpgsqlCommand($"DELETE FROM \"{db.Schema}\".agentpg_instances WHERE id = $1", connection, transaction))
            {
                delete.Parameters.Add(new NpgsqlParameter { Value = client.InstanceId });
                Assert.Equal(1, await delete.ExecuteNonQueryAsync());
            }

            await using (var count = new NpgsqlCommand($"SELECT count(*) FROM \"{db.Schema}\".agentpg_instance_tools WHERE instance_id = $1", connection, transaction))
            {
                count.Parameters.Add(new NpgsqlParameter { Value = client.InstanceId });
                Assert.Equal(0L, (long)(await count.ExecuteScalarAsync())!);
            }

            await transaction.CommitAsync();
        }

        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_instance_tools WHERE instance_id = $1 AND tool_name = 'evicted_tool'", client.InstanceId) == 1,
            "the instance and its tool to be registered again");
        Assert.Equal(1L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId));
    }
}
