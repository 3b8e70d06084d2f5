using AgentPg.Diagnostics;
using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Workers;

/// <summary>Executes an agent-as-tool call: creates the child run that answers it. The child's completion (trigger
/// agentpg_handle_child_run_complete) completes the execution and continues the parent.</summary>
internal sealed class AgentToolRunner(Engine engine, ClaimedTool claimed)
{
    private readonly ToolExecution _execution = claimed.Execution;

    // Taken before a refusal commits: the parent may go on and finish before the callback fires.
    private readonly Action<ToolCallEvent>? _onComplete = engine.Callbacks.OnComplete(claimed.Execution.RunId);

    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var task = Tools.DelegateTool.TaskOf(_execution.ToolInput);
        var delegateId = _execution.AgentId!.Value;
        var childDepth = claimed.Depth + 1;
        if (childDepth > engine.Options.MaxAgentDepth)
        {
            await FailAsync(
                $"Delegation refused: agent '{_execution.ToolName}' would run at depth {childDepth}, beyond the limit of " +
                $"{engine.Options.MaxAgentDepth} (AgentPgOptions.MaxAgentDepth). Answer without delegating further.",
                cancellationToken).ConfigureAwait(false);
            return;
        }

        var childId = await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                engine.Sql.ToolExecutions.AddFence(batch, _execution, engine.InstanceId);
                engine.Sql.ToolExecutions.AddCreateChildRun(batch, _execution, delegateId, task, engine.InstanceId, Diagnostics.Telemetry.CurrentTraceParent());
                var reader = await engine.ExecuteReaderAsync(batch, ct).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    await reader.NextResultAsync(ct).ConfigureAwait(false);
                    return await reader.ReadAsync(ct).ConfigureAwait(false) ? ToolExecutionSql.ReadChildRunId(reader) : (Guid?)null;
                }
            }
        }, engine.Time, cancellationToken).ConfigureAwait(false);

        if (childId is not { } child)
        {
            await FailAsync(
                $"Delegation refused: agent '{_execution.ToolName}' is already working on this request further up the chain " +
                "(a delegation cycle). Answer without delegating to it.",
                cancellationToken).ConfigureAwait(false);
            return;
        }

        engine.Callbacks.Inherit(_execution.RunId, child);
        Log.ChildRunCreated(engine.Logger, child, _execution.RunId, _execution.ToolName);
        // The child runs in the parent's mode; let the local worker of that mode look at once.
        engine.StreamingWake.Set();
        engine.BatchWake.Set();
    }

    private async Task FailAsync(string message, CancellationToken cancellationToken)
    {
        await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                engine.Sql.ToolExecutions.AddFence(batch, _execution, engine.InstanceId);
                engine.Sql.ToolExecutions.AddComplete(batch, _execution.Id, ToolExecutionState.Failed, null, isError: true, message, blocksJson: null);
                await engine.ExecuteNonQueryAsync(batch, ct).ConfigureAwait(false);
            }
        }, engine.Time, cancellationToken).ConfigureAwait(false);
        var e = new ToolCallEvent
        {
            RunId = _execution.RunId,
            SessionId = claimed.SessionId,
            ToolName = _execution.ToolName,
            ToolInput = _execution.ToolInput,
            IsAgentTool = true,
            IterationNumber = claimed.IterationNumber,
            IsError = true,
            ErrorMessage = message,
        };
        engine.Callbacks.FireComplete(e, _onComplete);
        // No child run will report this execution (AgentToolHook): it ended here.
        _ = engine.Hooks.ToolCallAsync(e, CancellationToken.None);
    }
}
