using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>A tool offered in a request's <c>tools</c>.</summary>
/// <param name="Name">The tool name.</param>
public sealed record FakeTool(string Name)
{
    /// <summary>The description, if any.</summary>
    public string? Description { get; init; }

    /// <summary>The <c>input_schema</c> of a client tool; <see langword="null"/> for server tools.</summary>
    public JsonElement? InputSchema { get; init; }

    /// <summary>The <c>type</c> of a typed tool: a server tool (for example <c>web_search_20250305</c>) or a client tool Claude
    /// defines (<c>memory_20250818</c>, whose name is always <c>memory</c>); <see langword="null"/> for custom tools.</summary>
    public string? ServerToolType { get; init; }

    /// <summary>Whether the tool was sent with <c>defer_loading: true</c> (tool search loads it when Claude searches for
    /// it).</summary>
    public bool DeferLoading { get; init; }

    /// <summary>Whether the tool was sent with <c>strict: true</c> (strict tool use).</summary>
    public bool Strict { get; init; }

    /// <summary>Whether the tool was sent with <c>eager_input_streaming: true</c> (fine-grained tool streaming).</summary>
    public bool EagerInputStreaming { get; init; }

    /// <summary>The tool definition as sent.</summary>
    public JsonElement Json { get; init; }
}
