namespace AgentPg.Internal;

/// <summary>Starts the loops that outlive the call that starts them (the workers, the leader's jobs, the LISTEN connection, a
/// shared event reader, a delta writer) without that call's execution context.</summary>
/// <remarks>Task.Run flows the caller's ExecutionContext, and with it <see cref="System.Diagnostics.Activity.Current"/> and the
/// logger's scopes: a client started inside a span (a startup span, a request that starts it lazily, a run that opens the
/// delta writer) made that span the ambient parent of everything the loop did for the client's lifetime — the spans of runs
/// created outside any trace, other libraries' spans (Npgsql, HttpClient) and log scopes all joined a trace that had ended.</remarks>
internal static class Background
{
    public static Task Run(Func<Task> loop)
    {
        if (ExecutionContext.IsFlowSuppressed())
        {
            return Task.Run(loop, CancellationToken.None);
        }

        using (ExecutionContext.SuppressFlow())
        {
            return Task.Run(loop, CancellationToken.None);
        }
    }
}
