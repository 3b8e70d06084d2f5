using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>An HTTP request the server received, recorded before it was authenticated or validated.</summary>
public sealed record RecordedRequest
{
    /// <summary>The <c>request-id</c> the server answered with (also the <c>request_id</c> of an error body).</summary>
    public string RequestId { get; init; } = "";

    /// <summary>The HTTP method.</summary>
    public string Method { get; init; } = "";

    /// <summary>The path, for example <c>/v1/messages</c>.</summary>
    public string Path { get; init; } = "";

    /// <summary>The raw query string including the leading <c>?</c>, or empty.</summary>
    public string QueryString { get; init; } = "";

    /// <summary>The query parameters (repeated names joined by commas).</summary>
    public IReadOnlyDictionary<string, string> Query { get; init; } = new Dictionary<string, string>(StringComparer.Ordinal);

    /// <summary>The request headers (case-insensitive names; repeated headers joined by commas).</summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

    /// <summary>The parsed JSON body; <see langword="null"/> when the body was empty, not JSON or too large.</summary>
    public JsonElement? Body { get; init; }

    /// <summary>The <c>x-stainless-retry-count</c> header (0, 1, 2… per SDK attempt), or <see langword="null"/> when absent.</summary>
    public int? RetryCount { get; init; }

    /// <summary>The <c>anthropic-beta</c> values, split on commas and trimmed.</summary>
    public IReadOnlyList<string> Betas { get; init; } = [];

    /// <summary>When the request arrived, from the server's <see cref="FakeClaudeServerOptions.TimeProvider"/>.</summary>
    public DateTimeOffset ReceivedAt { get; init; }

    /// <summary>Whether this is a <c>POST /v1/messages</c> request (a model call, streamed or not).</summary>
    public bool IsMessagesCall => Method == "POST" && Path == "/v1/messages";

    /// <summary>Whether the body asked for a stream (<c>"stream":true</c>).</summary>
    public bool IsStreaming => Body is { ValueKind: JsonValueKind.Object } body && body.TryGetProperty("stream", out var stream) && stream.ValueKind == JsonValueKind.True;
}
