using System.Collections.Concurrent;
using System.Text.Json;
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

    // Payload property names, encoded once (the payloads are written for every run).
    private static readonly JsonEncodedText s_runId = JsonEncodedText.Encode("run_id");
    private static readonly JsonEncodedText s_runMode = JsonEncodedText.Encode("run_mode");
    private static readonly JsonEncodedText s_sessionId = JsonEncodedText.Encode("session_id");
    private static readonly JsonEncodedText s_parentRunId = JsonEncodedText.Encode("parent_run_id");
    private static readonly JsonEncodedText s_state = JsonEncodedText.Encode("state");
    private static readonly JsonEncodedText s_depth = JsonEncodedText.Encode("depth");
    private static readonly JsonEncodedText s_nextRunMode = JsonEncodedText.Encode("next_run_mode");

    [ThreadStatic]
    private static PayloadWriter? t_writer;

    public void RunCreated(Guid runId, RunMode mode, Guid sessionId, Guid? parentRunId)
        => Send(Channels.RunCreated, RunCreatedPayload(runId, mode, sessionId, parentRunId));

    public void RunFinalized(Run run, RunState state, string? nextRunMode)
        => Send(Channels.RunFinalized, RunFinalizedPayload(run, state, nextRunMode));

    public void ToolPending(Guid runId) => Send(Channels.ToolPending, ToolPendingPayload(runId));

    /// <summary>The <c>agentpg_run_created</c> payload (<see cref="Notification.Parse"/> reads it).</summary>
    internal static string RunCreatedPayload(Guid runId, RunMode mode, Guid sessionId, Guid? parentRunId)
    {
        var w = PayloadWriter.Start(ref t_writer);
        w.Json.WriteString(s_runId, runId);
        w.Json.WriteString(s_runMode, mode == RunMode.Batch ? "batch" : "streaming");
        w.Json.WriteString(s_sessionId, sessionId);
        WriteGuidOrNull(w.Json, s_parentRunId, parentRunId);
        return w.Finish();
    }

    /// <summary>The <c>agentpg_run_finalized</c> payload.</summary>
    internal static string RunFinalizedPayload(Run run, RunState state, string? nextRunMode)
    {
        var w = PayloadWriter.Start(ref t_writer);
        w.Json.WriteString(s_runId, run.Id);
        w.Json.WriteString(s_sessionId, run.SessionId);
        w.Json.WriteString(s_state, state == RunState.Completed ? "completed" : state == RunState.Failed ? "failed" : "cancelled");
        WriteGuidOrNull(w.Json, s_parentRunId, run.ParentRunId);
        w.Json.WriteNumber(s_depth, run.Depth);
        w.Json.WriteString(s_runMode, run.RunMode == RunMode.Batch ? "batch" : "streaming");
        w.Json.WriteString(s_nextRunMode, nextRunMode);
        return w.Finish();
    }

    /// <summary>The <c>agentpg_tool_pending</c> payload.</summary>
    internal static string ToolPendingPayload(Guid runId)
    {
        var w = PayloadWriter.Start(ref t_writer);
        w.Json.WriteString(s_runId, runId);
        return w.Finish();
    }

    private static void WriteGuidOrNull(Utf8JsonWriter json, JsonEncodedText name, Guid? value)
    {
        if (value is { } guid)
        {
            json.WriteString(name, guid);
        }
        else
        {
            json.WriteNull(name);
        }
    }

    private void Send(string channel, string payload)
    {
        _queue.Enqueue((schema.Channel(channel), payload));
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
