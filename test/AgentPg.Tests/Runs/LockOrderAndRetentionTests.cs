using System.Collections.Concurrent;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using static AgentPg.Tests.Infrastructure.ConnectionSql;

namespace AgentPg.Tests.Runs;

/// <summary>Review D7 (one lock order: parent run before child run, run before its executions) and D14 (deleted runs'
/// messages never join another conversation).</summary>
public sealed class LockOrderAndRetentionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task ChildCompletingWhileTheParentIsInterrupted_NoDeadlockReachesTheCaller()
    {
        // The child's completion is held inside its transaction (a test trigger waits for an advisory lock the test holds
        // while the parent's agent-tool execution is completed): the interrupt then always arrives while the worker holds
        // what it locked so far. With the old order (child, then parent) and the cancel's (parent, then child), PostgreSQL
        // detected a deadlock and the caller of RunFastAsync got a raw 40P01 about half of the time. Every wait below is for
        // a state that lasts until the test ends it (a lock waiter), never for a window that a slow poll could miss.
        var gateKey = Random.Shared.Next(1, int.MaxValue);
        await using var held = await db.TriggerAsync("test_held_agent_tool_completion", "BEFORE UPDATE", "agentpg_tool_executions", $"""
            IF NEW.is_agent_tool AND NEW.state = 'completed' AND OLD.state = 'running' THEN
                PERFORM pg_advisory_xact_lock_shared(77001, {gateKey});
            END IF;
            RETURN NEW;
            """);
        await using var gate = await db.DataSource.OpenConnectionAsync();
        await using var h = await Harness.StartAsync(db);
        var child = await h.AgentAsync(a => a with { SystemPrompt = "You are the child." });
        var parent = await h.AgentAsync(a => a with { SystemPrompt = "You are the parent.", AgentIds = [child.Id] });
        var childArrived = new ConcurrentDictionary<string, TaskCompletionSource>();
        var releaseChild = new ConcurrentDictionary<string, TaskCompletionSource>();
        h.Claude.Respond(async (request, ct) =>
        {
            if (request.SystemText.Contains("the child", StringComparison.Ordinal))
            {
                var task = request.LastUserText;
                childArrived.GetOrAdd(task, _ => new()).TrySetResult();
                await releaseChild.GetOrAdd(task, _ => new()).Task.WaitAsync(ct);
                return FakeReply.Text("child did " + task);
            }

            return request.ToolResults.Count == 0 && request.LastUserText.StartsWith("delegate", StringComparison.Ordinal)
                ? FakeReply.ToolUse(child.Name, new { task = request.LastUserText + " work" }) with { StopReason = "tool_use" }
                : FakeReply.Text("parent done");
        });

        for (var i = 0; i < 3; i++)
        {
            var session = await h.Client.NewSessionAsync();
            var task = $"delegate {i} work";
            await h.Client.RunFastAsync(session, parent.Id, $"delegate {i}");
            await Eventually.WithinAsync(childArrived.GetOrAdd(task, _ => new()).Task, "the child run's request");
            await ExecuteAsync(gate, $"SELECT pg_advisory_lock(77001, {gateKey})");
            releaseChild.GetOrAdd(task, _ => new()).TrySetResult();
            await Eventually.TrueAsync(
                async () => await db.ScalarAsync<long>(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = 77001 AND objid = $1 AND objsubid = 2 AND NOT granted",
                    (long)gateKey) > 0,
                "the worker records the child's completion (and waits in the test trigger)");

            var interrupting = h.Client.RunFastAsync(session, parent.Id, "interrupt " + i,
                new RunOptions { ConcurrencyPolicy = ConcurrencyPolicy.Interrupt });
            await Eventually.TrueAsync(
                async () => interrupting.IsCompleted || await db.ScalarAsync<long>(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event <> 'advisory' AND query LIKE $1",
                    $"%{db.Schema}%") > 0,
                "the interrupting run's creation cancels the parent, or waits for the worker's locks to do it");
            await ExecuteAsync(gate, $"SELECT pg_advisory_unlock(77001, {gateKey})");

            var interruptingId = await Eventually.WithinAsync(interrupting, "the interrupting run's creation");
            Assert.Equal("parent done", (await Eventually.WithinAsync(h.Client.WaitForRunAsync(interruptingId), "the interrupting run")).Text);
        }
    }

    [DatabaseFact]
    public async Task DeletedRun_ItsMessagesDoNotJoinTheNextRunsConversation()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Respond(request => FakeReply.Text("answer to " + request.LastUserText));
        var session = await h.Client.NewSessionAsync();
        var deleted = await h.Client.RunFastAsync(session, agent.Id, "to be deleted");
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(deleted), "the first run");

        // A retention job or a manual cleanup deletes the run row.
        await db.ExecuteAsync("DELETE FROM {schema}.agentpg_runs WHERE id = $1", deleted);
        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "next"), "the next run");

        var sent = h.Claude.Requests.Last(r => r.IsMessagesCall).Body!.Value.GetProperty("messages");
        Assert.Equal(1, sent.GetArrayLength());
        Assert.Equal(["next", "answer to next"], (await h.Client.GetMessagesAsync(session)).Select(m => m.Content.Single().Text));
    }
}
