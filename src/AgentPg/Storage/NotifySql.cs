using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL to keep NOTIFY (and WAL flushes) off the hot path. See agentpg_notify in the migration.</summary>
internal static class NotifySql
{
    /// <summary>In a step's batch: the listed channels are not notified by the triggers; the step sends them after commit.</summary>
    public const string Defer = "SELECT set_config('agentpg.defer_notify', $1, true)";

    /// <summary>Notifications on their own ($1 channels, $2 payloads, pairwise), committed asynchronously: they carry no
    /// data, so nothing waits for a WAL flush while holding the notification lock. One transaction for many.</summary>
    public const string Send =
        "SELECT pg_notify(n.channel, n.payload) FROM (SELECT set_config('synchronous_commit', 'off', true)) s, unnest($1::text[], $2::text[]) AS n(channel, payload)";

    /// <summary>In a step's batch: commit without waiting for the WAL flush. Only for steps whose loss in a server crash is
    /// harmless because the next fenced write detects it (claims, iteration starts).</summary>
    public const string AsyncCommit = "SELECT set_config('synchronous_commit', 'off', true)";

    /// <summary>Adds <see cref="Defer"/> for <paramref name="channels"/> (comma-separated).</summary>
    public static void AddDefer(NpgsqlBatch batch, string channels) => batch.Append(Defer, P.Text(channels));

    /// <summary>Adds <see cref="Send"/>: <paramref name="channels"/> and <paramref name="payloads"/> pairwise.</summary>
    public static void AddSend(NpgsqlBatch batch, IReadOnlyList<string> channels, IReadOnlyList<string> payloads)
        => batch.Append(Send, P.TextArray(channels), P.TextArray(payloads));

    /// <summary>Adds <see cref="AsyncCommit"/>.</summary>
    public static void AddAsyncCommit(NpgsqlBatch batch) => batch.Append(AsyncCommit);
}
