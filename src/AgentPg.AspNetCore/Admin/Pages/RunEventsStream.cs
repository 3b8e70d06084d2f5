using System.Text;
using System.Text.Json;

namespace AgentPg.AspNetCore.Admin.Pages;

/// <summary>The live stream of a run for the run and chat pages: server-sent events fed by
/// <see cref="AgentPgClient.WatchRunAsync"/>, resumable with <c>Last-Event-ID</c> (the event sequence). Payloads are JSON
/// written by the serializer and inserted by the page as text, never as HTML.</summary>
internal static class RunEventsStream
{
    public static async Task<IResult> StreamAsync(AdminRequest r)
    {
        var run = await r.RunAsync(r.RouteId("run")).ConfigureAwait(false);
        var after = long.TryParse(r.Http.Request.Headers["Last-Event-ID"].ToString(), out var last) && last >= 0 ? last : 0;
        return new EventStreamResult(r.Client, run.Id, after, r.Options.KeepAliveInterval);
    }

    private sealed class EventStreamResult(AgentPgClient client, Guid runId, long after, TimeSpan keepAliveInterval) : IResult
    {
        public async Task ExecuteAsync(HttpContext http)
        {
            var response = http.Response;
            response.ContentType = "text/event-stream";
            response.Headers.CacheControl = "no-store";
            response.Headers["X-Accel-Buffering"] = "no";
            var cancellationToken = http.RequestAborted;
            var iterations = new HashSet<int>();
            using var writer = new EventWriter(response);
            using var streaming = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            var keepAlive = keepAliveInterval == Timeout.InfiniteTimeSpan
                ? Task.CompletedTask
                : writer.KeepAliveAsync(keepAliveInterval, client.Options.TimeProvider, streaming.Token);
            try
            {
                // From the start even when resuming: a repeated iteration number (a retried model call, "reset") is told from
                // a new one by the iterations before Last-Event-ID too. The feed reads the run's events from the start anyway.
                await foreach (var e in client.WatchRunAsync(runId, 0, cancellationToken).ConfigureAwait(false))
                {
                    var (name, data) = e switch
                    {
                        TextDeltaEvent t when t.RunId == runId => ("text", (object)new { text = Html.ShowBidiControls(t.Text) }),
                        // A repeated iteration number means the model call was retried: the page drops that iteration's text.
                        IterationStartedEvent i when i.RunId == runId => (iterations.Add(i.IterationNumber) ? "iteration" : "reset", new { n = i.IterationNumber }),
                        // A call waiting for a person shows as such until it starts (approved) or completes (rejected).
                        ApprovalRequestedEvent a => ("tool", new { id = a.ToolExecutionId, name = a.ToolName, depth = a.Depth, done = false, isError = false, awaiting = true }),
                        ToolCallStartedEvent s => ("tool", new { id = s.ToolExecutionId, name = s.ToolName, depth = s.Depth, done = false, isError = false, awaiting = false }),
                        ToolCallCompletedEvent c => ("tool", new { id = c.ToolExecutionId, name = c.ToolName, depth = c.Depth, done = true, isError = c.IsError, awaiting = false }),
                        // Claude unavailable: the page says the run waits, and when it calls again.
                        ModelUnavailableEvent m when m.RunId == runId => ("waiting", new
                        {
                            error = Html.ShowBidiControls(m.Error), retryAt = m.RetryAt.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
                            waitSeconds = Math.Round(m.Wait.TotalSeconds, 1), failingForSeconds = Math.Round(m.FailingFor.TotalSeconds, 1),
                        }),
                        RunStateChangedEvent s when s.RunId == runId => ("state", new { state = AdminPages.Name(s.State) }),
                        RunFinishedEvent f when f.RunId == runId => ("finished", new { state = AdminPages.Name(f.State) }),
                        _ => ("", (object)new { }),
                    };
                    if (name.Length == 0 || e.Sequence <= after)
                    {
                        continue;
                    }

                    await writer.WriteAsync(Encoding.UTF8.GetBytes($"id: {e.Sequence}\nevent: {name}\ndata: {JsonSerializer.Serialize(data)}\n\n"),
                        cancellationToken).ConfigureAwait(false);
                    if (name == "finished")
                    {
                        return;
                    }
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // The browser went away: the watch ends with it.
            }
            finally
            {
                await streaming.CancelAsync().ConfigureAwait(false);
                await keepAlive.ConfigureAwait(false);
            }
        }
    }

    /// <summary>Writes one stream's events and keep-alive comments, one write at a time.</summary>
    private sealed class EventWriter(HttpResponse response) : IDisposable
    {
        private static readonly byte[] s_keepAlive = ": keep-alive\n\n"u8.ToArray();

        private readonly SemaphoreSlim _writing = new(1, 1);
        private int _wrote;

        public async Task WriteAsync(byte[] bytes, CancellationToken cancellationToken)
        {
            await _writing.WaitAsync(cancellationToken).ConfigureAwait(false);
            try
            {
                await response.Body.WriteAsync(bytes, cancellationToken).ConfigureAwait(false);
                await response.Body.FlushAsync(cancellationToken).ConfigureAwait(false);
                Volatile.Write(ref _wrote, 1);
            }
            finally
            {
                _writing.Release();
            }
        }

        /// <summary>Writes a comment line (which EventSource ignores) at every tick after which nothing was written: proxies and
        /// load balancers close connections idle for long (a run waiting for a person sends nothing for minutes), and a browser
        /// that left without closing its connection is noticed at the next write.</summary>
        public async Task KeepAliveAsync(TimeSpan interval, TimeProvider time, CancellationToken cancellationToken)
        {
            using var timer = new PeriodicTimer(interval, time);
            try
            {
                while (await timer.WaitForNextTickAsync(cancellationToken).ConfigureAwait(false))
                {
                    if (Interlocked.Exchange(ref _wrote, 0) == 0)
                    {
                        await WriteAsync(s_keepAlive, cancellationToken).ConfigureAwait(false);
                        // A comment is not an event: the next tick writes another if no event came.
                        Volatile.Write(ref _wrote, 0);
                    }
                }
            }
            catch (Exception ex) when (ex is OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException)
            {
                // The stream ended, or the browser went away (the request is aborted: the watch ends with it).
            }
        }

        public void Dispose() => _writing.Dispose();
    }
}
