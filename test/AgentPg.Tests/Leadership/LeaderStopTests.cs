using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Leadership;

/// <summary>Stopping while the elector is handling a failed lease refresh (its own schema: the test breaks the lease table).</summary>
public sealed class LeaderStopTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task StopAsync_WhileTheLostLeadershipHookOfAFailedRefreshObservesItsToken_StopsAndDeregisters()
    {
        var hookWaiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var client = db.CreateClient(o =>
        {
            o.LeaderTtl = TimeSpan.FromMilliseconds(600);
            o.Hooks = new AgentPgHooks
            {
                OnLostLeadership = async ct =>
                {
                    hookWaiting.TrySetResult();
                    // A hook that flushes something and honours the token it is given.
                    await Task.Delay(Timeout.Infinite, ct);
                },
            };
        });
        await client.StartAsync();
        await Eventually.TrueAsync(async () => await db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_leader WHERE leader_id = $1 AND expires_at > now()", client.InstanceId) == 1, "the client to lead");

        // The next refresh fails (an error, not a lost lease): the elector stops leading and calls the hook.
        await db.ExecuteAsync("ALTER TABLE {schema}.agentpg_leader RENAME TO agentpg_leader_away");
        try
        {
            await Eventually.WithinAsync(hookWaiting.Task, "the failed refresh to end the leadership and call OnLostLeadership");

            // Before the fix the stop threw TaskCanceledException: the hook's cancellation escaped the elector's loop, and the
            // stop never drained, never stopped the heartbeat and never deregistered the instance.
            await Eventually.WithinAsync(client.StopAsync(), "the stop");
        }
        finally
        {
            await db.ExecuteAsync("ALTER TABLE {schema}.agentpg_leader_away RENAME TO agentpg_leader");
        }

        Assert.False(client.IsStarted);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_instances WHERE id = $1", client.InstanceId));
    }
}
