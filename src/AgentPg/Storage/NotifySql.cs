using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL to keep NOTIFY (and WAL flushes) off the hot path. See agentpg_notify in the migration.</summary>
internal static class NotifySql
{
    /// <summary>In a step's batch: the listed channels are not notified by the triggers; the step sends them after commit.</summary>
    public const string Defer = "SELECT set_config('agentpg.defer_notify', $1, true)";

    /// <summary><see cref="Defer"/>, and the batch's statements planned on their indexes (enable_seqscan off, local to the
    /// transaction): for a batch with a read that a generic plan made while a table was small could turn into a scan of the
    /// whole table (the completion's next root run, <see cref="RunSql.Complete"/>). One statement for both.</summary>
    public const string DeferOnIndexPlans = "SELECT set_config('agentpg.defer_notify', $1, true), set_config('enable_seqscan', 'off', true)";

    /// <summary>Notifications on their own ($1 channels, $2 payloads, pairwise), committed asynchronously: they carry no
    /// data, so nothing waits for a WAL flush while holding the notification lock. One transaction for many.</summary>
    public const string Send =
        "SELECT pg_notify(n.channel, n.payload) FROM (SELECT set_config('synchronous_commit', 'off', true)) s, unnest($1::text[], $2::text[]) AS n(channel, payload)";

    /// <summary>In a step's batch: commit without waiting for the WAL flush. Only for steps whose loss in a server crash is
    /// harmless because the next fenced write detects it (claims, iteration starts).</summary>
    public const string AsyncCommit = "SELECT set_config('synchronous_commit', 'off', true)";

    /// <summary>Adds <see cref="Defer"/> for <paramref name="channels"/> (comma-separated).</summary>
    public static void AddDefer(NpgsqlBatch batch, string channels) => batch.Append(Defer, P.Text(channels));

    /// <summary>Adds <see cref="DeferOnIndexPlans"/> for <paramref name="channels"/> (comma-separated).</summary>
    public static void AddDeferOnIndexPlans(NpgsqlBatch batch, string channels) => batch.Append(DeferOnIndexPlans, P.Text(channels));

    /// <summary>Adds <see cref="Send"/>: <paramref name="channels"/> and <paramref name="payloads"/> pairwise.</summary>
    public static void AddSend(NpgsqlBatch batch, IReadOnlyList<string> channels, IReadOnlyList<string> payloads)
        => batch.Append(Send, P.TextArray(channels), P.TextArray(payloads));

    /// <summary>Adds <see cref="AsyncCommit"/>.</summary>
    public static void AddAsyncCommit(NpgsqlBatch batch) => batch.Append(AsyncCommit);

    // The listener's connection (Notifications/NotificationListener).

    /// <summary>Tags the connection so operators (and tests) can find it in pg_stat_activity.</summary>
    public const string SetApplicationName = "SELECT set_config('application_name', $1, false)";

    /// <summary>A round trip that proves the connection is alive.</summary>
    public const string Ping = "SELECT 1";

    /// <summary>LISTEN to each channel (the names are AgentPg's own, quoted), in one round trip.</summary>
    public static string Listen(IEnumerable<string> channels) => string.Join("; ", channels.Select(c => $"LISTEN \"{c}\""));

    /// <summary>Sets up a listener connection: <see cref="SetApplicationName"/>, then <see cref="Listen"/>.</summary>
    public static async Task StartListeningAsync(NpgsqlConnection connection, string applicationName, IEnumerable<string> channels,
        CancellationToken cancellationToken)
    {
        await Db.Command(connection, null, SetApplicationName, P.Text(applicationName)).ExecuteAsync(cancellationToken).ConfigureAwait(false);
        await Db.Command(connection, null, Listen(channels)).ExecuteAsync(cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Undoes <see cref="StartListeningAsync"/> on a connection that goes back to the pool: with <c>No Reset On Close</c>
    /// Npgsql does not, and a pooled connection would keep receiving notifications nobody reads and the listener's name.</summary>
    public const string StopListening = "UNLISTEN *; RESET application_name";

    /// <summary>Runs <see cref="StopListening"/>, waiting at most <paramref name="timeoutSeconds"/> (a stop does not hang on an
    /// unresponsive server: Npgsql then breaks the connection, which never goes back to the pool).</summary>
    public static Task StopListeningAsync(NpgsqlConnection connection, int timeoutSeconds)
    {
        var command = Db.Command(connection, null, StopListening);
        command.CommandTimeout = timeoutSeconds;
        return command.ExecuteAsync(CancellationToken.None);
    }

    /// <summary>Runs <see cref="Ping"/>.</summary>
    public static Task PingAsync(NpgsqlConnection connection, CancellationToken cancellationToken)
        => Db.Command(connection, null, Ping).ExecuteAsync(cancellationToken);
}
