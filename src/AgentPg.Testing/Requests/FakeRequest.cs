using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>
/// A parsed, validated Messages request, as a responder sees it (see
/// <see cref="FakeClaudeServer.Respond(Func{FakeRequest, FakeReply?})"/>). For a batch, one per batch request, with the
/// batch creation's headers.
/// </summary>
public sealed record FakeRequest
{
    /// <summary>The <c>model</c>.</summary>
    public string Model { get; init; } = "";

    /// <summary>The whole request body (for a batch request, its <c>params</c>).</summary>
    public JsonElement Body { get; init; }

    /// <summary>The <c>messages</c> array as sent.</summary>
    public JsonElement Messages { get; init; }

    /// <summary>The <c>system</c> prompt as text (a string, or its text blocks joined by newlines); empty when absent.</summary>
    public string SystemText { get; init; } = "";

    /// <summary>The tools offered, in order.</summary>
    public IReadOnlyList<FakeTool> Tools { get; init; } = [];

    /// <summary>The <c>tool_choice</c> object, if any.</summary>
    public JsonElement? ToolChoice { get; init; }

    /// <summary>The <c>thinking</c> object, if any.</summary>
    public JsonElement? Thinking { get; init; }

    /// <summary>The <c>max_tokens</c>.</summary>
    public long MaxTokens { get; init; }

    /// <summary>Whether the answer is streamed (<c>"stream":true</c>).</summary>
    public bool IsStreaming { get; init; }

    /// <summary>The <c>custom_id</c> of a batch request; <see langword="null"/> for <c>/v1/messages</c>.</summary>
    public string? BatchCustomId { get; init; }

    /// <summary>The text of the last user turn (consecutive user messages merged, tool_result blocks left out).</summary>
    public string LastUserText { get; init; } = "";

    /// <summary>The tool_result blocks of the last user turn, in order.</summary>
    public IReadOnlyList<FakeToolResult> ToolResults { get; init; } = [];

    /// <summary>The request headers (case-insensitive names).</summary>
    public IReadOnlyDictionary<string, string> Headers { get; init; } = new Dictionary<string, string>(StringComparer.OrdinalIgnoreCase);

    /// <summary>The <c>anthropic-beta</c> values, split on commas and trimmed.</summary>
    public IReadOnlyList<string> Betas { get; init; } = [];

    /// <summary>The estimated prompt size in tokens (before prompt caching).</summary>
    public long InputTokens { get; init; }

    /// <summary>The <c>x-stainless-retry-count</c> header (0 for a first attempt), or <see langword="null"/> when absent.</summary>
    public int? RetryCount { get; init; }

    /// <summary>Whether a tool with this name is offered.</summary>
    /// <param name="name">The tool name.</param>
    /// <returns><see langword="true"/> when <see cref="Tools"/> has it.</returns>
    public bool HasTool(string name) => Tools.Any(t => string.Equals(t.Name, name, StringComparison.Ordinal));
}
