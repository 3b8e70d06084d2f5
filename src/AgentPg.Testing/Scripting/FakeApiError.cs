namespace AgentPg.Testing;

/// <summary>
/// An HTTP error answer: status code, <c>error.type</c> and <c>error.message</c>, in the real API's error shape
/// <c>{"type":"error","error":{"type":…,"message":…},"request_id":…}</c>. Made by
/// <see cref="FakeReply.Error(int, string, string, TimeSpan?, bool?)"/>.
/// </summary>
/// <param name="Status">The HTTP status code, for example 529.</param>
/// <param name="Type">The <c>error.type</c>, for example <c>overloaded_error</c>.</param>
/// <param name="Message">The <c>error.message</c>, for example <c>Overloaded</c>.</param>
public sealed record FakeApiError(int Status, string Type, string Message)
{
    /// <summary>
    /// When set, sent as <c>retry-after-ms</c> (milliseconds) and <c>retry-after</c> (whole seconds, rounded up). The SDK
    /// honours any value, so keep it small in tests.
    /// </summary>
    public TimeSpan? RetryAfter { get; init; }

    /// <summary>When set, sent as <c>x-should-retry: true|false</c>, which overrides the SDK's status-based retry decision.</summary>
    public bool? ShouldRetry { get; init; }
}
