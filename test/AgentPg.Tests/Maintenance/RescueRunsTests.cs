using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Maintenance;

/// <summary>What each release path writes on the run it gives back and on its unfinished iteration — the instance release
/// (agentpg_release_instance_work), the rescue of a run without progress (agentpg_rescue) and the stuck-work sweep
/// (agentpg_release_unheld_work) — all through agentpg_rescue_runs: state, error, rescue count, epoch, holder, and the
/// failed run's mode for the leader's count.</summary>
/// <remarks>A class of its own: agentpg_rescue releases the claims of every dead instance of the schema.</remarks>
public sealed class RescueRunsTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private Task<string> DescribeRunAsync(Guid run) => db.ScalarAsync<string>(
        "SELECT concat_ws(' | ', state, coalesce(error_type, '-'), coalesce(error_message, '-'), rescue_attempts || ' rescues', " +
        "'epoch ' || claim_epoch, 'held by ' || coalesce(claimed_by_instance_id, 'nobody'), " +
        "CASE WHEN last_rescue_at IS NULL THEN 'never rescued' ELSE 'rescued' END) FROM {schema}.agentpg_runs WHERE id = $1", run);

    private Task<string> DescribeIterationAsync(Guid iteration) => db.ScalarAsync<string>(
        "SELECT concat_ws(' | ', coalesce(error_type, '-'), coalesce(error_message, '-'), " +
        "CASE WHEN completed_at IS NULL THEN 'in progress' ELSE 'completed' END) FROM {schema}.agentpg_iterations WHERE id = $1", iteration);

    /// <summary>A run streaming on <paramref name="holder"/> for an hour without progress, its iteration in progress, already
    /// rescued <paramref name="rescueAttempts"/> times: claim epoch 1.</summary>
    private async Task<(Guid Run, Guid Iteration)> HeldRunAsync(string holder, int rescueAttempts, string state = "streaming")
    {
        var run = await db.Seed.RunAsync(mode: state.StartsWith("batch", StringComparison.Ordinal) ? "batch" : "streaming");
        var iteration = await db.Seed.RunningIterationAsync(run);
        await db.Seed.ClaimRunAsync(run, holder, TimeSpan.FromHours(1), state, rescueAttempts);
        await db.ExecuteAsync("UPDATE {schema}.agentpg_runs SET last_progress_at = now() - interval '1 hour' WHERE id = $1", run);
        return (run, iteration);
    }

    [DatabaseFact]
    public async Task InstanceRelease_UnderTheLimit_GivesTheRunBack_AndAbandonsItsIteration()
    {
        var (run, iteration) = await HeldRunAsync("release-under", rescueAttempts: 1);

        Assert.Empty(await db.ScalarAsync<string[]>("SELECT failed_run_modes FROM {schema}.agentpg_release_instance_work('release-under', true, 3)"));

        Assert.Equal("pending | - | - | 2 rescues | epoch 2 | held by nobody | rescued", await DescribeRunAsync(run));
        Assert.Equal("abandoned | Instance release-under released the run | completed", await DescribeIterationAsync(iteration));
        await db.Seed.FinishRunAsync(run);
    }

    [DatabaseFact]
    public async Task InstanceRelease_OverTheLimit_FailsTheRun()
    {
        var (run, iteration) = await HeldRunAsync("release-over", rescueAttempts: 3);

        Assert.Equal(new[] { "streaming" }, await db.ScalarAsync<string[]>(
            "SELECT failed_run_modes FROM {schema}.agentpg_release_instance_work('release-over', true, 3)"));

        Assert.Equal("failed | rescue_failed | Run was rescued 3 times (the maximum is 3); last holder: instance release-over | " +
                     "4 rescues | epoch 2 | held by nobody | rescued", await DescribeRunAsync(run));
        Assert.Equal("abandoned | Instance release-over released the run | completed", await DescribeIterationAsync(iteration));
    }

    [DatabaseFact]
    public async Task GracefulRelease_CountsNoRescue_AndABatchRunKeepsItsBatch()
    {
        // A stopping instance (count_rescue false) over the limit: nothing fails. A batch run whose batch was submitted keeps its
        // state and iteration for the poller that adopts it.
        var (streaming, streamingIteration) = await HeldRunAsync("stopping", rescueAttempts: 5);
        var (batch, batchIteration) = await HeldRunAsync("stopping", rescueAttempts: 5, state: "batch_pending");
        await db.ExecuteAsync("UPDATE {schema}.agentpg_iterations SET batch_id = 'msgbatch_kept' WHERE id = $1", batchIteration);

        Assert.Equal(2, await db.ScalarAsync<int>("SELECT released FROM {schema}.agentpg_release_instance_work('stopping', false, 3)"));

        Assert.Equal("pending | - | - | 5 rescues | epoch 2 | held by nobody | never rescued", await DescribeRunAsync(streaming));
        Assert.Equal("abandoned | Instance stopping released the run | completed", await DescribeIterationAsync(streamingIteration));
        Assert.Equal("batch_pending | - | - | 5 rescues | epoch 2 | held by nobody | never rescued", await DescribeRunAsync(batch));
        Assert.Equal("- | - | in progress", await DescribeIterationAsync(batchIteration));
        await db.Seed.FinishRunAsync(streaming);
        await db.Seed.FinishRunAsync(batch);
    }

    [DatabaseFact]
    public async Task NoProgressRescue_OverTheLimit_FailsTheRun_UnderIt_GivesItBack()
    {
        await db.Seed.InstanceAsync("live-stuck", TimeSpan.Zero);
        var (over, overIteration) = await HeldRunAsync("live-stuck", rescueAttempts: 3);
        var (under, underIteration) = await HeldRunAsync("live-stuck", rescueAttempts: 0);

        Assert.Equal("2 released, failed: streaming", await db.ScalarAsync<string>(
            "SELECT released_runs || ' released, failed: ' || array_to_string(failed_run_modes, ', ') " +
            "FROM {schema}.agentpg_rescue(interval '1 day', interval '1 minute', 3)"));

        Assert.Equal("failed | rescue_failed | Run made no progress and was rescued 3 times (the maximum is 3) | " +
                     "4 rescues | epoch 2 | held by nobody | rescued", await DescribeRunAsync(over));
        Assert.Equal("abandoned | No progress for 00:01:00 | completed", await DescribeIterationAsync(overIteration));
        Assert.Equal("pending | - | - | 1 rescues | epoch 2 | held by nobody | rescued", await DescribeRunAsync(under));
        Assert.Equal("abandoned | No progress for 00:01:00 | completed", await DescribeIterationAsync(underIteration));
        await db.Seed.FinishRunAsync(under);
    }

    [DatabaseFact]
    public async Task StuckWorkSweep_OverTheLimit_FailsTheRun_UnderIt_GivesItBack()
    {
        // A live instance whose latest report (now) leaves out the runs it claimed an hour ago.
        await db.Seed.InstanceAsync("live-unheld", TimeSpan.Zero);
        await db.ExecuteAsync("UPDATE {schema}.agentpg_instances SET held_reported_at = now(), held_work = '{}' WHERE id = 'live-unheld'");
        var (over, overIteration) = await HeldRunAsync("live-unheld", rescueAttempts: 3);
        var (under, underIteration) = await HeldRunAsync("live-unheld", rescueAttempts: 0);

        Assert.Equal("2 released, failed: streaming", await db.ScalarAsync<string>(
            "SELECT released || ' released, failed: ' || array_to_string(failed_run_modes, ', ') " +
            "FROM {schema}.agentpg_release_unheld_work(interval '1 second', 3)"));

        Assert.Equal("failed | rescue_failed | Run was rescued 3 times (the maximum is 3); last holder: instance live-unheld, " +
                     "which stopped working on it | 4 rescues | epoch 2 | held by nobody | rescued", await DescribeRunAsync(over));
        Assert.Equal("abandoned | Instance live-unheld stopped working on the run | completed", await DescribeIterationAsync(overIteration));
        Assert.Equal("pending | - | - | 1 rescues | epoch 2 | held by nobody | rescued", await DescribeRunAsync(under));
        Assert.Equal("abandoned | Instance live-unheld stopped working on the run | completed", await DescribeIterationAsync(underIteration));
        await db.Seed.FinishRunAsync(under);
    }
}
