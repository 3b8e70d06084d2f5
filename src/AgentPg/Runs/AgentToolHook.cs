using AgentPg.Diagnostics;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>A child run finished here (completed or failed): its parent's agent-tool execution was completed by the same
/// transaction (trigger agentpg_handle_child_run_complete), so this instance reports it to
/// <see cref="AgentPgHooks.OnToolCall"/> (not awaited; one read, only with the hook set).</summary>
internal static class AgentToolHook
{
    public static void Fire(Engine engine, Run run)
    {
        if (run.ParentRunId is null || !engine.Hooks.HasToolCall)
        {
            return;
        }

        _ = FireAsync(engine, run.Id);
    }

    private static async Task FireAsync(Engine engine, Guid childRunId)
    {
        try
        {
            if (await ToolExecutionSql.ReadAgentToolEventAsync(engine.DataSource, engine.Sql, childRunId, CancellationToken.None).ConfigureAwait(false) is { } e)
            {
                await engine.Hooks.ToolCallAsync(e, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or InvalidOperationException or TimeoutException)
        {
            Log.HookFailed(engine.Logger, ex, nameof(AgentPgHooks.OnToolCall));
        }
    }
}
