using System.Text.Json.Nodes;
using AgentPg.Diagnostics;
using AgentPg.Notifications;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>Sends the notifications that AgentPg's own steps defer until after their commit.</summary>
/// <remarks>Best effort, like every NOTIFY: a lost one only means the receivers find the work at their next poll.</remarks>
internal sealed class Notifier(NpgsqlDataSource dataSource, bool prepare, SchemaName schema, Microsoft.Extensions.Logging.ILogger logger)
{
    public void RunCreated(Guid runId, RunMode mode, Guid sessionId, Guid? parentRunId)
        => Send(Channels.RunCreated, new JsonObject
        {
            ["run_id"] = runId.ToString(),
            ["run_mode"] = mode == RunMode.Batch ? "batch" : "streaming",
            ["session_id"] = sessionId.ToString(),
            ["parent_run_id"] = parentRunId?.ToString(),
        });

    public void RunFinalized(Run run, RunState state, string? nextRunMode)
        => Send(Channels.RunFinalized, new JsonObject
        {
            ["run_id"] = run.Id.ToString(),
            ["session_id"] = run.SessionId.ToString(),
            ["state"] = state == RunState.Completed ? "completed" : state == RunState.Failed ? "failed" : "cancelled",
            ["parent_run_id"] = run.ParentRunId?.ToString(),
            ["depth"] = run.Depth,
            ["run_mode"] = run.RunMode == RunMode.Batch ? "batch" : "streaming",
            ["next_run_mode"] = nextRunMode,
        });

    public void ToolPending(Guid runId) => Send(Channels.ToolPending, new JsonObject { ["run_id"] = runId.ToString() });

    private void Send(string channel, JsonObject payload) => _ = SendAsync(schema.Channel(channel), payload.ToJsonString());

    private async Task SendAsync(string channel, string payload)
    {
        try
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                var command = new NpgsqlBatchCommand(NotifySql.Send);
                command.Parameters.Add(P.Text(channel));
                command.Parameters.Add(P.Text(payload));
                batch.BatchCommands.Add(command);
                await batch.ExecuteNonQueryAsync(dataSource, prepare, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex) when (ex is NpgsqlException or TimeoutException or InvalidOperationException)
        {
            Log.NotifyFailed(logger, ex, channel);
        }
    }
}
