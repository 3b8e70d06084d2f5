namespace AgentPg.Testing;

/// <summary>
/// Something that goes wrong in the middle of a streamed (<c>"stream":true</c>) answer, after a number of SSE events
/// (every event counts, <c>ping</c> included). Set it on <see cref="FakeReply.StreamFault"/>.
/// </summary>
/// <remarks>
/// For a non-streaming request, <see cref="Disconnect"/> aborts the connection before any response byte,
/// <see cref="Error"/> becomes an HTTP error with the status the real API uses for that error type (529 for
/// <c>overloaded_error</c>, 500 for <c>api_error</c>, …), and <see cref="EndWithoutStop"/> is ignored.
/// </remarks>
public sealed record FakeStreamFault
{
    private FakeStreamFault(FakeStreamFaultKind kind, int afterEvents, string errorType, string errorMessage)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(afterEvents);
        Kind = kind;
        AfterEvents = afterEvents;
        ErrorType = errorType;
        ErrorMessage = errorMessage;
    }

    /// <summary>How many events are sent before the fault.</summary>
    public int AfterEvents { get; init; }

    /// <summary>The <c>error.type</c> of an <see cref="Error"/> fault.</summary>
    public string ErrorType { get; init; }

    /// <summary>The <c>error.message</c> of an <see cref="Error"/> fault.</summary>
    public string ErrorMessage { get; init; }

    internal FakeStreamFaultKind Kind { get; }

    /// <summary>Sends an <c>event: error</c> after <paramref name="afterEvents"/> events, then ends the 200 response. The SDK
    /// throws <c>AnthropicSseException</c> and does not retry.</summary>
    /// <param name="afterEvents">How many events to send first.</param>
    /// <param name="type">The <c>error.type</c>.</param>
    /// <param name="message">The <c>error.message</c>.</param>
    /// <returns>The fault.</returns>
    public static FakeStreamFault Error(int afterEvents, string type = "overloaded_error", string message = "Overloaded")
    {
        ArgumentException.ThrowIfNullOrEmpty(type);
        ArgumentNullException.ThrowIfNull(message);
        return new(FakeStreamFaultKind.Error, afterEvents, type, message);
    }

    /// <summary>Aborts the TCP connection after <paramref name="afterEvents"/> events. The SDK sees an
    /// <see cref="IOException"/>.</summary>
    /// <param name="afterEvents">How many events to send first.</param>
    /// <returns>The fault.</returns>
    public static FakeStreamFault Disconnect(int afterEvents) => new(FakeStreamFaultKind.Disconnect, afterEvents, "", "");

    /// <summary>Ends the response cleanly after <paramref name="afterEvents"/> events, without <c>message_stop</c>.</summary>
    /// <param name="afterEvents">How many events to send first.</param>
    /// <returns>The fault.</returns>
    public static FakeStreamFault EndWithoutStop(int afterEvents) => new(FakeStreamFaultKind.EndWithoutStop, afterEvents, "", "");
}

internal enum FakeStreamFaultKind
{
    Error,
    Disconnect,
    EndWithoutStop,
}
