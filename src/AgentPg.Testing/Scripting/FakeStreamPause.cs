namespace AgentPg.Testing;

/// <summary>
/// A hold in the middle of a streamed (<c>"stream":true</c>) answer: the server sends <see cref="AfterEvents"/> SSE events
/// (every event counts, <c>ping</c> included), then waits until <see cref="Until"/> completes before it sends the rest. Set it
/// on <see cref="FakeReply.StreamPause"/> to observe a client in the middle of a stream (a live view, a watcher that
/// disconnects mid-answer) whatever the machine's speed, instead of relying on <see cref="FakeReply.EventDelay"/>.
/// </summary>
/// <remarks>
/// A count at or beyond the number of events holds the answer after its last event, before the response ends. A
/// non-streaming request ignores the pause. The hold ends without the rest of the answer when the request is aborted
/// (the client gave up) or the server stops.
/// </remarks>
public sealed record FakeStreamPause
{
    /// <summary>Creates a pause.</summary>
    /// <param name="afterEvents">How many events are sent before the pause.</param>
    /// <param name="until">The signal the rest of the answer waits for; typically a <see cref="TaskCompletionSource"/>'s task.</param>
    public FakeStreamPause(int afterEvents, Task until)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(afterEvents);
        ArgumentNullException.ThrowIfNull(until);
        AfterEvents = afterEvents;
        Until = until;
    }

    /// <summary>How many events are sent before the pause.</summary>
    public int AfterEvents { get; init; }

    /// <summary>The signal the rest of the answer waits for.</summary>
    public Task Until { get; init; }
}
