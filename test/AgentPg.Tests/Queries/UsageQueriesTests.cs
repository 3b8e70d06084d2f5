using System.Text;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Cli;
using AgentPg.Tests.Hosting;
using AgentPg.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace AgentPg.Tests.Queries;

/// <summary>GetUsageAsync: the sums of the stored iterations and compaction summaries, filtered (time, tenant, agent, model,
/// delegation tree, session) and grouped, and their cost at the given prices (cache writes by lifetime, batches discounted).</summary>
public sealed class UsageQueriesTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly DateTimeOffset s_day1 = new(2026, 3, 1, 10, 0, 0, TimeSpan.Zero);
    private static readonly DateTimeOffset s_day2 = s_day1.AddDays(1);
    private static readonly DateTimeOffset s_day3 = s_day1.AddDays(2);

    private static readonly JsonSerializerOptions s_json = new(JsonSerializerDefaults.Web);

    private sealed record Call(Guid Run, DateTimeOffset CompletedAt, string Model, bool Batch, int Input, int Output, int CacheWrite, int CacheWrite1h,
        int CacheRead);

    private static string NewModel() => "claude-usage-" + Guid.NewGuid().ToString("N")[..8];

    private static Dictionary<string, object?> Tenant(string id) => new() { ["tenant_id"] = id };

    private Task<Guid> SessionAsync(string tenant) => db.Seed.SessionAsync(JsonSerializer.Serialize(Tenant(tenant)));

    // A finished run (nothing for the workers of other tests to claim), created and finalized when given.
    private Task<Guid> RunAsync(Guid session, Guid agent, DateTimeOffset createdAt, DateTimeOffset finalizedAt, string mode = "streaming", Guid? parent = null)
        => db.ScalarAsync<Guid>(
            """
            INSERT INTO {schema}.agentpg_runs (session_id, agent_id, prompt, run_mode, parent_run_id, depth, state, created_at, finalized_at)
            VALUES ($1, $2, 'go', $3::{schema}.agentpg_run_mode, $4,
                    coalesce((SELECT depth + 1 FROM {schema}.agentpg_runs WHERE id = $4), 0), 'completed', $5, $6)
            RETURNING id
            """, session, agent, mode, (object?)parent ?? DBNull.Value, createdAt, finalizedAt);

    private async Task<Call> CallAsync(Call call)
    {
        await db.ExecuteAsync(
            """
            INSERT INTO {schema}.agentpg_iterations (run_id, iteration_number, batch_id, model, input_tokens, output_tokens, cache_creation_input_tokens,
                                                     cache_creation_1h_input_tokens, cache_read_input_tokens, created_at, started_at, completed_at)
            SELECT $1, coalesce(max(iteration_number), 0) + 1, $2, $3, $4, $5, $6, $7, $8, $9 - interval '1 minute', $9 - interval '1 minute', $9
              FROM {schema}.agentpg_iterations WHERE run_id = $1
            """, call.Run, call.Batch ? (object)("msgbatch_" + Guid.NewGuid().ToString("N")) : DBNull.Value, call.Model, call.Input, call.Output,
            call.CacheWrite, call.CacheWrite1h, call.CacheRead, call.CompletedAt);
        return call;
    }

    private Task CompactionAsync(Guid session, DateTimeOffset at, string model, int input, int output)
        => db.ExecuteAsync(
            """
            INSERT INTO {schema}.agentpg_compaction_events (session_id, strategy, original_tokens, compacted_tokens, messages_removed, model_used, usage, created_at)
            VALUES ($1, 'summarize', 1000, 100, 3, $2, jsonb_build_object('input_tokens', $3::int, 'output_tokens', $4::int,
                    'cache_creation_input_tokens', 0, 'cache_read_input_tokens', 0), $5)
            """, session, model, input, output, at);

    private static void AssertSums(IEnumerable<Call> expected, UsageRow row, string because)
    {
        var calls = expected.ToList();
        Assert.True(calls.Count == row.ModelCalls, $"{because}: {calls.Count} calls expected, {row.ModelCalls} reported");
        Assert.Equal(calls.Sum(c => (long)c.Input), row.InputTokens);
        Assert.Equal(calls.Sum(c => (long)c.Output), row.OutputTokens);
        Assert.Equal(calls.Sum(c => (long)c.CacheWrite), row.CacheCreationInputTokens);
        Assert.Equal(calls.Sum(c => (long)c.CacheWrite1h), row.CacheCreation1hInputTokens);
        Assert.Equal(calls.Sum(c => (long)c.CacheRead), row.CacheReadInputTokens);
        Assert.Equal(calls.Count(c => c.Batch), row.BatchModelCalls);
        Assert.Equal(calls.Select(c => c.Run).Distinct().Count(), row.Runs);
    }

    [DatabaseFact]
    public async Task GetUsageAsync_EachGrouping_SumsTheStoredIterationsOfTheTenant_AndNeverAnotherTenants()
    {
        await using var client = db.CreateClient();
        var (tenant, other) = ($"a-{Guid.NewGuid():N}", $"b-{Guid.NewGuid():N}");
        var (sonnet, haiku) = (NewModel(), NewModel());
        var (writer, reviewer) = (await db.Seed.AgentAsync(sonnet), await db.Seed.AgentAsync(sonnet));
        var (s1, s2, theirs) = (await SessionAsync(tenant), await SessionAsync(tenant), await SessionAsync(other));
        var r1 = await RunAsync(s1, writer, s_day1.AddHours(-1), s_day1.AddHours(1));
        var r2 = await RunAsync(s2, reviewer, s_day2.AddHours(-1), s_day2.AddHours(1), mode: "batch");
        var r3 = await RunAsync(s1, writer, s_day3.AddHours(-1), s_day3.AddHours(1));
        var theirRun = await RunAsync(theirs, writer, s_day2.AddHours(-1), s_day2.AddHours(1));
        List<Call> calls =
        [
            await CallAsync(new(r1, s_day1, sonnet, false, 100, 10, 50, 0, 400)),
            await CallAsync(new(r1, s_day1.AddMinutes(5), haiku, false, 200, 20, 0, 0, 0)),
            await CallAsync(new(r2, s_day2, sonnet, true, 300, 30, 70, 70, 900)),
            await CallAsync(new(r2, s_day2.AddMinutes(5), sonnet, true, 400, 40, 0, 0, 970)),
            await CallAsync(new(r3, s_day3, haiku, false, 500, 50, 20, 5, 0)),
        ];
        await CallAsync(new(theirRun, s_day2, sonnet, false, 1_000_000, 1_000_000, 0, 0, 0));
        await CompactionAsync(s2, s_day2.AddMinutes(10), haiku, 600, 60);
        await CompactionAsync(theirs, s_day2.AddMinutes(10), haiku, 9_999, 999);
        var compaction = new Call(Guid.Empty, s_day2.AddMinutes(10), haiku, false, 600, 60, 0, 0, 0);
        var everything = calls.Append(compaction).ToList();

        async Task<UsageReport> UsageAsync(params UsageGrouping[] groupBy)
            => await client.GetUsageAsync(new UsageQuery { SessionMetadata = Tenant(tenant), GroupBy = groupBy, Since = s_day1.AddDays(-1) });

        static void AssertRuns(UsageRow row, IEnumerable<Call> calls)
            => Assert.Equal(calls.Where(c => c.Run != Guid.Empty).Select(c => c.Run).Distinct().Count(), row.Runs);

        var total = await UsageAsync();
        var only = Assert.Single(total.Rows);
        Assert.Equal(6, only.ModelCalls);
        Assert.Equal(everything.Sum(c => (long)c.Input), only.InputTokens);
        Assert.Equal(everything.Sum(c => (long)c.CacheRead), only.CacheReadInputTokens);
        AssertRuns(only, calls);
        Assert.Equal((only.ModelCalls, only.InputTokens, only.Runs), (total.Total.ModelCalls, total.Total.InputTokens, total.Total.Runs));

        var byDay = await UsageAsync(UsageGrouping.Day);
        Assert.Equal([DateOnly.FromDateTime(s_day1.UtcDateTime), DateOnly.FromDateTime(s_day2.UtcDateTime), DateOnly.FromDateTime(s_day3.UtcDateTime)],
            byDay.Rows.Select(r => r.Day!.Value));
        AssertSums(calls.Where(c => c.CompletedAt.Date == s_day1.Date), byDay.Rows[0], "day 1");
        Assert.Equal(3, byDay.Rows[1].ModelCalls);   // the two batched calls and the compaction
        Assert.Equal(300 + 400 + 600, byDay.Rows[1].InputTokens);
        AssertSums(calls.Where(c => c.CompletedAt.Date == s_day3.Date), byDay.Rows[2], "day 3");

        var byAgent = await UsageAsync(UsageGrouping.Agent);
        var writerRow = Assert.Single(byAgent.Rows, r => r.AgentId == writer);
        AssertSums(calls.Where(c => c.Run == r1 || c.Run == r3), writerRow, "writer");
        Assert.Equal(await db.ScalarAsync<string>("SELECT name FROM {schema}.agentpg_agents WHERE id = $1", writer), writerRow.AgentName);
        AssertSums(calls.Where(c => c.Run == r2), Assert.Single(byAgent.Rows, r => r.AgentId == reviewer), "reviewer");
        Assert.Equal(600, Assert.Single(byAgent.Rows, r => r.AgentId is null).InputTokens);   // the compaction: no agent, listed last
        Assert.Null(byAgent.Rows[^1].AgentId);

        var byModel = await UsageAsync(UsageGrouping.Model);
        AssertSums(calls.Where(c => c.Model == sonnet), Assert.Single(byModel.Rows, r => r.Model == sonnet), "sonnet");
        Assert.Equal(200 + 500 + 600, Assert.Single(byModel.Rows, r => r.Model == haiku).InputTokens);

        var byMode = await UsageAsync(UsageGrouping.RunMode);
        AssertSums(calls.Where(c => c.Run == r2), Assert.Single(byMode.Rows, r => r.Mode == RunMode.Batch), "batch");
        AssertSums(calls.Where(c => c.Run != r2), Assert.Single(byMode.Rows, r => r.Mode == RunMode.Streaming), "streaming");

        var bySource = await UsageAsync(UsageGrouping.Source);
        AssertSums(calls, Assert.Single(bySource.Rows, r => r.Source == UsageSource.Run), "runs");
        var summaries = Assert.Single(bySource.Rows, r => r.Source == UsageSource.Compaction);
        Assert.Equal((1L, 600L, 60L, 0L), (summaries.ModelCalls, summaries.InputTokens, summaries.OutputTokens, summaries.Runs));

        var byTenantAndModel = await UsageAsync(UsageGrouping.SessionMetadata("tenant_id"), UsageGrouping.Model);
        Assert.Equal(2, byTenantAndModel.Rows.Count);
        Assert.All(byTenantAndModel.Rows, r => Assert.Equal(tenant, r.SessionMetadata["tenant_id"]));
        AssertSums(calls.Where(c => c.Model == sonnet), Assert.Single(byTenantAndModel.Rows, r => r.Model == sonnet), "tenant × sonnet");

        // The other tenant's calls and compaction never count, whichever way the rows are grouped; its session id with this
        // tenant's filter finds nothing.
        Assert.DoesNotContain(byModel.Rows, r => r.InputTokens >= 1_000_000);
        var none = await client.GetUsageAsync(new UsageQuery { SessionMetadata = Tenant(tenant), SessionId = theirs });
        Assert.Empty(none.Rows);
        Assert.Equal(0, none.Total.ModelCalls);
        var theirsOnly = await client.GetUsageAsync(new UsageQuery { SessionMetadata = Tenant(other), GroupBy = [UsageGrouping.SessionMetadata("tenant_id")] });
        Assert.Equal([other], theirsOnly.Rows.Select(r => r.SessionMetadata["tenant_id"]));
        Assert.Equal(1_000_000 + 9_999, theirsOnly.Total.InputTokens);

        // The stored iterations, summed by SQL of their own, agree.
        var stored = await db.ScalarAsync<long>(
            "SELECT sum(i.input_tokens + i.cache_read_input_tokens)::bigint FROM {schema}.agentpg_iterations i JOIN {schema}.agentpg_runs r ON r.id = i.run_id " +
            "WHERE r.session_id = ANY($1)", new[] { s1, s2 });
        Assert.Equal(stored + 600, only.InputTokens + only.CacheReadInputTokens);
    }

    [DatabaseFact]
    public async Task GetUsageAsync_TimeRange_CountsCallsByCompletion_AlsoOfARunStartedLongBefore()
    {
        await using var client = db.CreateClient();
        var tenant = $"t-{Guid.NewGuid():N}";
        var model = NewModel();
        var agent = await db.Seed.AgentAsync(model);
        var session = await SessionAsync(tenant);
        // A run that waited 40 days (an approval, say) and finished on day 2, and one finished before the range.
        var longRun = await RunAsync(session, agent, s_day1.AddDays(-40), s_day2.AddHours(2));
        var oldRun = await RunAsync(session, agent, s_day1.AddDays(-40), s_day1.AddDays(-39));
        var early = await CallAsync(new(longRun, s_day1.AddDays(-40).AddMinutes(1), model, false, 1, 1, 0, 0, 0));
        var inRange = await CallAsync(new(longRun, s_day2.AddHours(1), model, false, 10, 10, 0, 0, 0));
        await CallAsync(new(oldRun, s_day1.AddDays(-39), model, false, 100, 100, 0, 0, 0));
        var later = await CallAsync(new(longRun, s_day2.AddHours(2), model, false, 1000, 1000, 0, 0, 0));

        var report = await client.GetUsageAsync(new UsageQuery { SessionMetadata = Tenant(tenant), Since = s_day2, Until = s_day2.AddHours(2) });
        AssertSums([inRange], report.Total, "[day 2, day 2 + 2 h)");
        Assert.Equal(s_day2, report.Since);
        var fromDay2 = await client.GetUsageAsync(new UsageQuery { SessionMetadata = Tenant(tenant), Since = s_day2 });
        AssertSums([inRange, later], fromDay2.Total, "since day 2");
        var untilDay1 = await client.GetUsageAsync(new UsageQuery { SessionMetadata = Tenant(tenant), Until = s_day1 });
        Assert.Equal(101, untilDay1.Total.InputTokens);
        Assert.Equal(early.Input + 100, untilDay1.Total.InputTokens);
    }

    [DatabaseFact]
    public async Task GetUsageAsync_RootRunId_SumsTheWholeDelegationTree_AndNothingElseOfTheSession()
    {
        await using var client = db.CreateClient();
        var tenant = $"t-{Guid.NewGuid():N}";
        var model = NewModel();
        var (lead, helper) = (await db.Seed.AgentAsync(model), await db.Seed.AgentAsync(model));
        var session = await SessionAsync(tenant);
        var root = await RunAsync(session, lead, s_day1, s_day1.AddHours(1));
        var child = await RunAsync(session, helper, s_day1, s_day1.AddHours(1), parent: root);
        var grandchild = await RunAsync(session, helper, s_day1, s_day1.AddHours(1), parent: child);
        var next = await RunAsync(session, lead, s_day1.AddHours(2), s_day1.AddHours(3));
        var tree = new List<Call>
        {
            await CallAsync(new(root, s_day1.AddMinutes(1), model, false, 1, 2, 3, 0, 4)),
            await CallAsync(new(child, s_day1.AddMinutes(2), model, false, 10, 20, 30, 0, 40)),
            await CallAsync(new(grandchild, s_day1.AddMinutes(3), model, false, 100, 200, 300, 100, 400)),
            await CallAsync(new(root, s_day1.AddMinutes(4), model, false, 1000, 2000, 0, 0, 4000)),
        };
        await CallAsync(new(next, s_day1.AddHours(2), model, false, 77_777, 7, 0, 0, 0));

        var report = await client.GetUsageAsync(new UsageQuery { RootRunId = root, GroupBy = [UsageGrouping.Agent] });
        AssertSums(tree, report.Total, "the tree of the root");
        Assert.Equal(3, report.Total.Runs);
        AssertSums(tree.Where(c => c.Run != root), Assert.Single(report.Rows, r => r.AgentId == helper), "the helper's runs of the tree");
        AssertSums(tree.Where(c => c.Run != root), (await client.GetUsageAsync(new UsageQuery { RootRunId = child })).Total, "the child's subtree");
        Assert.Equal(0, (await client.GetUsageAsync(new UsageQuery { RootRunId = root, SessionMetadata = Tenant("someone else") })).Total.ModelCalls);
    }

    [DatabaseFact]
    public async Task GetUsageAsync_Prices_CacheWritesByLifetime_BatchesDiscounted_UnpricedModelsNamedWithoutCost()
    {
        await using var client = db.CreateClient(o => o.ModelPrices["never-used"] = new ModelPrice(1, 1, 1, 1, 1));
        var tenant = $"t-{Guid.NewGuid():N}";
        var (priced, unpriced) = (NewModel(), NewModel());
        var agent = await db.Seed.AgentAsync(priced);
        var session = await SessionAsync(tenant);
        var run = await RunAsync(session, agent, s_day1, s_day1.AddHours(1), mode: "batch");
        // 1 M tokens of each kind, 400 k of the cache writes with a 1-hour lifetime; the same once more through a batch.
        await CallAsync(new(run, s_day1.AddMinutes(1), priced, false, 1_000_000, 1_000_000, 1_000_000, 400_000, 1_000_000));
        await CallAsync(new(run, s_day1.AddMinutes(2), priced, true, 1_000_000, 1_000_000, 1_000_000, 400_000, 1_000_000));
        await CallAsync(new(run, s_day1.AddMinutes(3), unpriced, false, 5, 5, 0, 0, 0));
        var price = new ModelPrice(inputPerMillionTokens: 3m, outputPerMillionTokens: 15m, cacheWrite5mPerMillionTokens: 3.75m,
            cacheWrite1hPerMillionTokens: 6m, cacheReadPerMillionTokens: 0.30m);

        var report = await client.GetUsageAsync(new UsageQuery
        {
            SessionMetadata = Tenant(tenant), GroupBy = [UsageGrouping.Model], Prices = new Dictionary<string, ModelPrice> { [priced] = price },
        });

        // As billed: 3 + 15 + 0.6 × 3.75 + 0.4 × 6 + 0.3 = 22.95 for the direct call, half that for the batched one.
        var row = Assert.Single(report.Rows, r => r.Model == priced);
        Assert.Equal(22.95m + 11.475m, row.Cost);
        // Without caching or batches: every input token at 3, output at 15, twice.
        Assert.Equal(2 * (3m * 3 + 15m), row.CostWithoutDiscounts);
        var other = Assert.Single(report.Rows, r => r.Model == unpriced);
        Assert.Null(other.Cost);
        Assert.Null(other.CostWithoutDiscounts);
        Assert.Equal(5, other.InputTokens);
        Assert.Null(report.Total.Cost);
        Assert.Equal([unpriced], report.UnpricedModels);

        // The options' prices serve when the query has none: "never-used" prices neither model.
        var byOptions = await client.GetUsageAsync(new UsageQuery { SessionMetadata = Tenant(tenant), Model = priced });
        Assert.Null(byOptions.Total.Cost);
        Assert.Equal([priced], byOptions.UnpricedModels);
        Assert.Equal(2_000_000, byOptions.Total.InputTokens);

        var discounted = await client.GetUsageAsync(new UsageQuery
        {
            SessionMetadata = Tenant(tenant), Model = priced,
            Prices = new Dictionary<string, ModelPrice> { [priced] = price with { BatchDiscount = 0m } },
        });
        Assert.Equal(2 * 22.95m, discounted.Total.Cost);
        Assert.Empty(discounted.UnpricedModels);
    }

    [DatabaseFact]
    public async Task GetUsageAsync_RunsThroughTheFakeClaude_RecordTheModelTheCacheWriteLifetimesAndTheBatch()
    {
        var tool = "usage_tool_" + Guid.NewGuid().ToString("N")[..6];
        await using var h = await Harness.StartAsync(db, tools: new TestTool(tool, (_, _, _) => Task.FromResult("done")));
        var model = NewModel();
        var agent = await h.AgentAsync(a => a with { Model = model, Tools = [tool] });
        h.Claude.Respond(r => r.Model == model && r.ToolResults.Count == 0
            ? FakeReply.ToolUse(tool, new { }) with
            {
                Usage = new FakeUsage { InputTokens = 1000, OutputTokens = 100, CacheCreationInputTokens = 400, CacheCreation1hInputTokens = 300, CacheReadInputTokens = 2000 },
            }
            : FakeReply.Text("Done.") with { Usage = new FakeUsage { InputTokens = 500, OutputTokens = 50, CacheCreationInputTokens = 0, CacheReadInputTokens = 0 } });
        var tenant = $"t-{Guid.NewGuid():N}";
        var streamed = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(metadata: Tenant(tenant)), agent.Id, "go"), "the streaming run");
        var batched = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(metadata: Tenant(tenant)), agent.Id, "go"), "the batch run");

        var report = await h.Client.GetUsageAsync(new UsageQuery
        {
            SessionMetadata = Tenant(tenant), GroupBy = [UsageGrouping.RunMode, UsageGrouping.Model],
            Prices = new Dictionary<string, ModelPrice> { [model] = new ModelPrice(3m, 15m, 3.75m, 6m, 0.3m) },
        });

        Assert.Equal(2, report.Rows.Count);
        foreach (var (row, mode, batchCalls) in new[] { (report.Rows[0], RunMode.Batch, 2L), (report.Rows[1], RunMode.Streaming, 0L) })
        {
            Assert.Equal(mode, row.Mode);
            Assert.Equal(model, row.Model);
            Assert.Equal((1500L, 150L, 400L, 300L, 2000L, 2L, batchCalls, 1L),
                (row.InputTokens, row.OutputTokens, row.CacheCreationInputTokens, row.CacheCreation1hInputTokens, row.CacheReadInputTokens, row.ModelCalls,
                    row.BatchModelCalls, row.Runs));
        }

        // 1500 × 3 + 150 × 15 + 100 × 3.75 + 300 × 6 + 2000 × 0.3 = 9 525 per million; the batch run half.
        Assert.Equal(0.0047625m, report.Rows[0].Cost);
        Assert.Equal(0.009525m, report.Rows[1].Cost);
        Assert.Equal(0.01395m, report.Rows[1].CostWithoutDiscounts);
        Assert.Equal(streamed.TotalUsage.InputTokens + batched.TotalUsage.InputTokens, report.Total.InputTokens);
        Assert.Equal(4, await h.Db.ScalarAsync<long>(
            "SELECT count(*) FROM {schema}.agentpg_iterations WHERE run_id = ANY($1) AND model = $2", new[] { streamed.RunId, batched.RunId }, model));
    }

    [DatabaseFact]
    public async Task GetUsageAsync_AFailedIterationClaudeBilledNothingFor_IsNoModelCall_OneBilledMidStreamIs()
    {
        // Before, every failed iteration counted as a model call and its run as a run with calls: a request refused (403)
        // with no tokens, one never sent or abandoned by a rescue. Only what Claude billed counts: an answer that failed
        // mid-way after message_start was billed for its input tokens and stays a call.
        await using var h = await Harness.StartAsync(db, o => o.MaxModelRetries = 0);
        var model = NewModel();
        var agent = await h.AgentAsync(a => a with { Model = model });
        h.Claude.Respond(r => r.LastUserText switch
        {
            "refused" => FakeReply.Error(403, "permission_error", "Your API key does not have permission to use the specified resource."),
            "cut" => FakeReply.Text("cut off") with { Usage = new FakeUsage { InputTokens = 40, OutputTokens = 0 }, StreamFault = FakeStreamFault.Disconnect(2) },
            _ => FakeReply.Text("fine") with { Usage = new FakeUsage { InputTokens = 100, OutputTokens = 10 } },
        });
        var tenant = $"t-{Guid.NewGuid():N}";
        foreach (var prompt in new[] { "refused", "cut" })
        {
            var failed = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(metadata: Tenant(tenant)), agent.Id, prompt);
            await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(failed), $"the {prompt} run to fail"));
        }

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(metadata: Tenant(tenant)), agent.Id, "answered"), "the answered run");

        var report = await h.Client.GetUsageAsync(new UsageQuery { SessionMetadata = Tenant(tenant) });
        Assert.Equal((2L, 2L, 140L), (report.Total.ModelCalls, report.Total.Runs, report.Total.InputTokens));
    }

    [DatabaseFact]
    public async Task AFailedIteration_RecordsTheMaxTokensAndContextWindowItsRequestSent()
    {
        // Before, a failed iteration's row kept max_tokens NULL (only a completion stored it): the row did not say what was sent.
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Model = NewModel(), MaxTokens = 1234 });
        h.Claude.Respond(_ => FakeReply.Error(403, "permission_error", "Your API key does not have permission to use the specified resource."));
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "refused");
        await Assert.ThrowsAsync<AgentPgException>(() => Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the refused run to fail"));

        Assert.Single(h.Claude.Requests, r => r.IsMessagesCall);
        Assert.Equal(((int?)1234, false), (await h.Db.ScalarAsync<int?>("SELECT max_tokens FROM {schema}.agentpg_iterations WHERE run_id = $1", runId),
            await h.Db.ScalarAsync<bool>("SELECT extended_context FROM {schema}.agentpg_iterations WHERE run_id = $1", runId)));
    }

    [DatabaseFact]
    public async Task GetUsageAsync_BadInput_ThrowsArgumentExceptionsThatSayWhatToFix()
    {
        await using var client = db.CreateClient();
        var backwards = await Assert.ThrowsAsync<ArgumentException>(() => client.GetUsageAsync(new UsageQuery { Since = s_day2, Until = s_day1 }));
        Assert.Contains("must be after UsageQuery.Since", backwards.Message);
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetUsageAsync(new UsageQuery { Since = s_day1, Until = s_day1 }));

        var unknown = Assert.Throws<ArgumentException>(() => UsageGrouping.Parse("week"));
        Assert.Contains("use day, agent, model, mode, source or metadata:KEY", unknown.Message);
        Assert.Throws<ArgumentException>(() => UsageGrouping.Parse("metadata:"));
        Assert.Equal(UsageGrouping.SessionMetadata("tenant_id"), UsageGrouping.Parse("metadata:tenant_id"));
        Assert.Equal("metadata:tenant_id", UsageGrouping.SessionMetadata("tenant_id").ToString());
        Assert.Throws<ArgumentException>(() => UsageGrouping.SessionMetadata(""));

        var three = await Assert.ThrowsAsync<ArgumentException>(() => client.GetUsageAsync(new UsageQuery
        {
            GroupBy = [UsageGrouping.Day, UsageGrouping.Model, UsageGrouping.Agent],
        }));
        Assert.Contains("at most two different groupings", three.Message);
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetUsageAsync(new UsageQuery { GroupBy = [UsageGrouping.Day, UsageGrouping.Day] }));
        await Assert.ThrowsAsync<ArgumentException>(() => client.GetUsageAsync(new UsageQuery
        {
            Prices = new Dictionary<string, ModelPrice> { ["claude-x"] = null! },
        }));

        var negative = Assert.Throws<ArgumentOutOfRangeException>(() => new ModelPrice(3m, -15m, 3.75m, 6m, 0.3m));
        Assert.Contains("ModelPrice.OutputPerMillionTokens must not be negative", negative.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => new ModelPrice(3m, 15m, 3.75m, 6m, 0.3m) with { BatchDiscount = 1.5m });
        var options = Assert.Throws<ArgumentException>(() => db.CreateClient(o => o.ModelPrices["claude-x"] = null!));
        Assert.Contains("AgentPgOptions.ModelPrices", options.Message);
    }

    [DatabaseFact]
    public async Task UsageCommand_GroupsAndPricesFromAFile_JsonAndTable_BadInputIsAUsageError()
    {
        var tenant = $"t-{Guid.NewGuid():N}";
        var model = NewModel();
        var agent = await db.Seed.AgentAsync(model);
        var session = await SessionAsync(tenant);
        var run = await RunAsync(session, agent, s_day1, s_day1.AddHours(1), mode: "batch");
        await CallAsync(new(run, s_day1.AddMinutes(1), model, true, 1_000_000, 1_000_000, 0, 0, 0));
        await CallAsync(new(run, s_day2.AddMinutes(1), model, false, 1_000_000, 0, 0, 0, 0));
        var prices = Path.Combine(Path.GetTempPath(), $"agentpg-prices-{Guid.NewGuid():N}.json");
        await File.WriteAllTextAsync(prices, $$$"""{"{{{model}}}": {"input": 3, "output": 15, "cacheWrite5m": 3.75, "cacheWrite1h": 6, "cacheRead": 0.3}}""");
        try
        {
            string[] common = ["usage", "--tenant", $"tenant_id={tenant}", "--since", s_day1.AddDays(-1).ToString("O"), "--until", s_day3.ToString("O")];

            var json = await CliRunner.RunAsync(db.Schema, [.. common, "--group-by", "day", "--prices", prices, "--json"]);
            Assert.True(json.ExitCode == 0, json.ToString());
            using (var document = JsonDocument.Parse(json.Output))
            {
                var rows = document.RootElement.GetProperty("rows").EnumerateArray().ToList();
                Assert.Equal(["2026-03-01", "2026-03-02"], rows.Select(r => r.GetProperty("day").GetString()));
                Assert.Equal(9m, rows[0].GetProperty("cost").GetDecimal());   // (3 + 15) / 2: batched
                Assert.Equal(3m, rows[1].GetProperty("cost").GetDecimal());
                Assert.Equal(12m, document.RootElement.GetProperty("total").GetProperty("cost").GetDecimal());
            }

            var table = await CliRunner.RunAsync(db.Schema, [.. common, "--group-by", "metadata:tenant_id,model", "--prices", prices]);
            Assert.True(table.ExitCode == 0, table.ToString());
            Assert.Contains(tenant, table.Output, StringComparison.Ordinal);
            Assert.Contains("$12.0000", table.Output, StringComparison.Ordinal);
            Assert.Contains("total", table.Output, StringComparison.Ordinal);

            var unpriced = await CliRunner.RunAsync(db.Schema, [.. common]);
            Assert.Contains("No prices: give --prices FILE", unpriced.Output, StringComparison.Ordinal);

            foreach (var (args, message) in new (string[], string)[]
            {
                ([.. common, "--group-by", "week"], "--group-by: 'week' is not a usage grouping"),
                (["usage", "--since", s_day2.ToString("O"), "--until", s_day1.ToString("O")], "UsageQuery.Until"),
                (["usage", "--tenant", "acme"], "--tenant: 'acme' is not KEY=VALUE"),
                (["usage", "--group-by", "day,model,agent"], "at most two different groupings"),
            })
            {
                var bad = await CliRunner.RunAsync(db.Schema, args);
                Assert.True(bad.ExitCode == 2, bad.ToString());
                Assert.Contains(message, bad.Error, StringComparison.Ordinal);
            }

            await File.WriteAllTextAsync(prices, $$$"""{"{{{model}}}": {"input": -3, "output": 15, "cacheWrite5m": 3.75, "cacheWrite1h": 6, "cacheRead": 0.3}}""");
            var negative = await CliRunner.RunAsync(db.Schema, [.. common, "--prices", prices]);
            Assert.True(negative.ExitCode == 2, negative.ToString());
            Assert.Contains("ModelPrice.InputPerMillionTokens must not be negative", negative.Error, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(prices);
        }
    }

    [Fact]
    public void ModelPrices_FromConfiguration_BindLikeEveryOtherOption()
    {
        const string json = """
            {
              "AgentPg": {
                "ApiKey": "k",
                "ModelPrices": {
                  "claude-sonnet-4-5": {
                    "InputPerMillionTokens": 3, "OutputPerMillionTokens": 15, "CacheWrite5mPerMillionTokens": 3.75,
                    "CacheWrite1hPerMillionTokens": 6, "CacheReadPerMillionTokens": 0.3, "BatchDiscount": 0.4
                  }
                }
              }
            }
            """;
        var builder = HostFactory.Builder();
        builder.Configuration.AddJsonStream(new MemoryStream(Encoding.UTF8.GetBytes(json)));
        builder.Services.AddAgentPg(builder.Configuration.GetSection("AgentPg"));
        using var host = builder.Build();

        var price = host.Services.GetRequiredService<AgentPgClient>().Options.ModelPrices["claude-sonnet-4-5"];

        Assert.Equal(new ModelPrice(3m, 15m, 3.75m, 6m, 0.3m) with { BatchDiscount = 0.4m }, price);
    }
}
