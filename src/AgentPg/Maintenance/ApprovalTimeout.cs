using AgentPg.Diagnostics;
using AgentPg.Runs;

namespace AgentPg.Maintenance;

/// <summary>Leader job, every <see cref="AgentPgOptions.CleanupInterval"/> when <see cref="AgentPgOptions.ApprovalTimeout"/> is
/// set: rejects tool calls that waited longer than the timeout for a decision, with "approval timed out", so their runs
/// continue (Claude sees the rejection) instead of waiting forever.</summary>
/// <remarks>One statement per pass, over the partial index of awaiting executions, at most <see cref="PassLimit"/> requests
/// (the next pass takes the rest). Each rejection is the same guarded decision as <c>RejectToolCallAsync</c>, so a person
/// deciding at the same moment either wins or finds the request decided.</remarks>
internal sealed class ApprovalTimeout(Engine engine) : MaintenanceService("approval timeout", engine.Options.CleanupInterval)
{
    internal const int PassLimit = 1000;

    public override async Task RunAsync(CancellationToken cancellationToken)
    {
        if (engine.Options.ApprovalTimeout is not { } timeout)
        {
            return;
        }

        var expired = await engine.Sql.Approvals.ExpireAsync(engine.DataSource, engine.InstanceId, timeout, PassLimit, cancellationToken).ConfigureAwait(false);
        if (expired > 0)
        {
            Log.ApprovalsTimedOut(engine.Logger, expired, timeout);
            engine.StreamingWake.Set();
            engine.BatchWake.Set();
        }
    }
}
