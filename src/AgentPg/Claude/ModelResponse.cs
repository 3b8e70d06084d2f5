using System.Text.Json.Nodes;

namespace AgentPg.Claude;

/// <summary>One answer from Claude, aggregated from the stream with every block kept as Claude sent it.</summary>
internal sealed class ModelResponse
{
    public string? MessageId { get; set; }

    public string? Model { get; set; }

    public List<JsonObject> Blocks { get; } = [];

    /// <summary>Indexes of tool_use blocks whose input JSON was cut off (max_tokens in the middle of a tool call).</summary>
    public HashSet<int> TruncatedToolUses { get; } = [];

    public string? StopReason { get; set; }

    public string? StopSequence { get; set; }

    public Usage Usage { get; set; } = Usage.Zero;

    public bool Completed { get; set; }

    public string Text => string.Concat(Blocks.Where(b => (string?)b["type"] == "text").Select(b => (string?)b["text"] ?? ""));

    public IEnumerable<(int Index, JsonObject Block)> CompleteToolUses()
        => Blocks.Select((b, i) => (i, b)).Where(x => (string?)x.b["type"] == "tool_use" && !TruncatedToolUses.Contains(x.i));
}
