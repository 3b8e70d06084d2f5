using Npgsql;

namespace AgentPg.Storage;

/// <summary>Retries a database step through connection loss (for example a PostgreSQL restart).</summary>
/// <remarks>Steps retried this way are idempotent: client-generated ids with ON CONFLICT DO NOTHING, and fenced state
/// changes, which report a lost claim when an earlier attempt already committed.</remarks>
internal static class Transient
{
    private static readonly TimeSpan s_budget = TimeSpan.FromSeconds(60);

    public static bool IsTransient(Exception ex)
        => ex is NpgsqlException { IsTransient: true } || (ex is NpgsqlException && ex.InnerException is IOException or TimeoutException)
           || ex is PostgresException { SqlState: PostgresErrorCodes.AdminShutdown or PostgresErrorCodes.CrashShutdown or PostgresErrorCodes.CannotConnectNow
               or PostgresErrorCodes.DeadlockDetected or PostgresErrorCodes.SerializationFailure or PostgresErrorCodes.TooManyConnections };

    public static async Task<T> RetryAsync<T>(Func<CancellationToken, Task<T>> step, TimeProvider time, CancellationToken cancellationToken)
    {
        var started = time.GetTimestamp();
        var delay = TimeSpan.FromMilliseconds(50);
        while (true)
        {
            try
            {
                return await step(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception ex) when (IsTransient(ex) && time.GetElapsedTime(started) < s_budget && !cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(delay, time, cancellationToken).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(2).Ticks));
            }
        }
    }

    public static Task RetryAsync(Func<CancellationToken, Task> step, TimeProvider time, CancellationToken cancellationToken)
        => RetryAsync(async ct =>
        {
            await step(ct).ConfigureAwait(false);
            return true;
        }, time, cancellationToken);
}
