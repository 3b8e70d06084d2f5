using System.Text.Json;

namespace AgentPg.Notifications;

/// <summary>Channel names (without the schema prefix).</summary>
internal static class Channels
{
    public const string RunCreated = "agentpg_run_created";
    public const string RunState = "agentpg_run_state";
    public const string RunFinalized = "agentpg_run_finalized";
    public const string ToolPending = "agentpg_tool_pending";

    /// <summary>New live events of a root run (payload: the root run id); sent only for watched runs.</summary>
    public const string RunEvent = "agentpg_run_event";

    /// <summary>A root run got its first watcher (payload: the root run id): the instance streaming it publishes deltas.</summary>
    public const string RunWatch = "agentpg_run_watch";

    public static readonly string[] All = [RunCreated, RunState, RunFinalized, ToolPending, RunEvent, RunWatch];
}

/// <summary>A notification, with the payload fields AgentPg's triggers put in it.</summary>
internal sealed record Notification(string Channel, Guid? RunId, string? RunMode, string? State, Guid? ParentRunId, Guid? SessionId,
    string? NextRunMode = null)
{
    public static Notification Parse(string channel, string payload)
    {
        try
        {
            using var doc = JsonDocument.Parse(payload);
            var e = doc.RootElement;
            if (e.ValueKind != JsonValueKind.Object)
            {
                // Anyone may NOTIFY on these channels: a payload that is not an object carries nothing we read.
                return new Notification(channel, null, null, null, null, null);
            }

            return new Notification(channel, GetGuid(e, "run_id"), GetString(e, "run_mode"), GetString(e, "state"), GetGuid(e, "parent_run_id"), GetGuid(e, "session_id"),
                GetString(e, "next_run_mode"));
        }
        catch (JsonException)
        {
            return new Notification(channel, null, null, null, null, null);
        }
    }

    private static Guid? GetGuid(JsonElement e, string name)
        => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String && Guid.TryParse(v.GetString(), out var g) ? g : null;

    private static string? GetString(JsonElement e, string name)
        => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;
}
