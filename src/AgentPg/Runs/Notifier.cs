using System.Collections.Concurrent;
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
    private const int MaxPerTransaction = 500;
    private readonly ConcurrentQueue<(string Channel, string Payload)> _queue = new();
    private int _sending;

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

    private void Send(string channel, JsonObject payload)
    {
        _queue.Enqueue((schema.Channel(channel), payload.ToJsonString()));
        if (Interlocked.CompareExchange(ref _sending, 1, 0) == 0)
        {
            _ = Task.Run(DrainAsync);
        }
    }

    // One sender at a time: notifications queued while a send is in flight go out together in the next transaction, so
    // under load many steps share one NOTIFY transaction (and one pooled connection) instead of one each.
    private async Task DrainAsync()
    {
        while (true)
        {
            var channels = new List<string>();
            var payloads = new List<string>();
            while (channels.Count < MaxPerTransaction && _queue.TryDequeue(out var notification))
            {
                channels.Add(notification.Channel);
                payloads.Add(notification.Payload);
            }

            if (channels.Count > 0)
            {
                await SendAsync(channels, payloads).ConfigureAwait(false);
                continue;
            }

            Volatile.Write(ref _sending, 0);
            // A notification queued after the queue looked empty, whose Send saw the flag still set, is sent now.
            if (_queue.IsEmpty || Interlocked.CompareExchange(ref _sending, 1, 0) != 0)
            {
                return;
            }
        }
    }

    private async Task SendAsync(List<string> channels, List<string> payloads)
    {
        try
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                NotifySql.AddSend(batch, channels, payloads);
                await batch.ExecuteNonQueryAsync(dataSource, prepare, CancellationToken.None).ConfigureAwait(false);
            }
        }
        catch (Exception ex)
        {
            // Whatever the failure (database unreachable, data source disposed at shutdown), the drain goes on.
            Log.NotifyFailed(logger, ex, string.Join(", ", channels.Distinct()));
        }
    }
}
