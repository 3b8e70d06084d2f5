using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>A scripted <c>tool_use</c> block.</summary>
/// <param name="Name">The tool name.</param>
/// <param name="Input">The input object.</param>
public sealed record FakeToolUseBlock(string Name, JsonElement Input) : FakeContentBlock
{
    /// <summary>The tool name.</summary>
    public string Name { get; init; } = string.IsNullOrEmpty(Name) ? throw new ArgumentException("A tool_use block needs a tool name.", nameof(Name)) : Name;

    /// <summary>The input object (for a truncated block, the complete part of it).</summary>
    public JsonElement Input { get; init; } = Input;

    /// <summary>The <c>id</c>; <see langword="null"/> generates a fresh <c>toolu_01…</c> id each time the block is sent.</summary>
    public string? Id { get; init; }

    /// <summary>When set, the exact (possibly incomplete) JSON a stream sends as <c>input_json_delta</c> chunks instead of
    /// <see cref="Input"/>; see <see cref="FakeContentBlock.TruncatedToolUse(string, string, string?)"/>.</summary>
    public string? PartialInputJson { get; init; }

    /// <inheritdoc />
    public override string Type => "tool_use";
}
