using System.Text;
using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>One cacheable unit of a prompt (a tool, a system block or a message block), in prompt order.</summary>
internal readonly record struct PromptUnit(long Tokens, JsonElement Element, string Marker, string? CacheTtl);

/// <summary>The token estimate of a prompt, unit by unit.</summary>
internal sealed class PromptAnalysis(IReadOnlyList<PromptUnit> units, long totalTokens)
{
    public IReadOnlyList<PromptUnit> Units { get; } = units;

    public long TotalTokens { get; } = totalTokens;

    public bool HasBreakpoints => Units.Any(u => u.CacheTtl is not null);
}

/// <summary>
/// The deterministic token estimate: for each unit, UTF-8 bytes of its text / 4, rounded up (a tool counts its name,
/// description and schema; a tool_use its name and input; an image a flat 1,600 tokens; anything else its JSON).
/// </summary>
internal static class TokenEstimator
{
    private const long ImageTokens = 1600;

    public static long Estimate(string text) => (Encoding.UTF8.GetByteCount(text) + 3) / 4;

    public static PromptAnalysis Analyze(JsonElement body, IReadOnlyList<Turn> turns)
    {
        var units = new List<PromptUnit>();
        if (FakeJson.TryGet(body, "tools", out var tools) && tools.ValueKind == JsonValueKind.Array)
        {
            foreach (var tool in tools.EnumerateArray())
            {
                var text = new StringBuilder();
                text.Append(FakeJson.GetString(tool, "name")).Append(FakeJson.GetString(tool, "description"));
                foreach (var property in tool.EnumerateObject())
                {
                    if (property.Name is not ("name" or "description" or "cache_control"))
                    {
                        text.Append(property.Value.GetRawText());
                    }
                }

                units.Add(new PromptUnit(Estimate(text.ToString()), tool, "tool", CacheTtl(tool)));
            }
        }

        if (FakeJson.TryGet(body, "system", out var system))
        {
            if (system.ValueKind == JsonValueKind.String)
            {
                units.Add(new PromptUnit(Estimate(system.GetString()!), system, "system", null));
            }
            else if (system.ValueKind == JsonValueKind.Array)
            {
                foreach (var block in system.EnumerateArray())
                {
                    units.Add(new PromptUnit(Estimate(FakeJson.GetString(block, "text") ?? ""), block, "system", CacheTtl(block)));
                }
            }
        }

        foreach (var turn in turns)
        {
            foreach (var block in turn.Blocks)
            {
                units.Add(new PromptUnit(BlockTokens(block), block.Element, turn.Role, block.Element.ValueKind == JsonValueKind.Object ? CacheTtl(block.Element) : null));
            }
        }

        // Top-level cache_control marks the last cacheable block.
        if (FakeJson.TryGet(body, "cache_control", out var topLevel) && units.Count > 0 && units[^1].CacheTtl is null)
        {
            units[^1] = units[^1] with { CacheTtl = Ttl(topLevel) };
        }

        return new PromptAnalysis(units, units.Sum(u => u.Tokens));
    }

    public static long OutputTokens(IEnumerable<FakeContentBlock> content)
    {
        long tokens = 0;
        foreach (var block in content)
        {
            tokens += block switch
            {
                FakeTextBlock text => Estimate(text.Text),
                FakeThinkingBlock thinking => Estimate(thinking.Thinking),
                FakeToolUseBlock toolUse => Estimate(toolUse.Name) + Estimate(toolUse.PartialInputJson ?? FakeJson.ToText(toolUse.Input)),
                FakeRedactedThinkingBlock redacted => Estimate(redacted.Data),
                FakeRawBlock raw => Estimate(raw.Json.GetRawText()),
                _ => 0,
            };
        }

        return Math.Max(1, tokens);
    }

    private static long BlockTokens(TurnBlock block)
    {
        var element = block.Element;
        if (element.ValueKind == JsonValueKind.String)
        {
            return Estimate(element.GetString()!);
        }

        return block.Type switch
        {
            "text" => Estimate(block.Text),
            "image" => ImageTokens,
            "tool_use" or "server_tool_use" => Estimate((FakeJson.GetString(element, "name") ?? "") + (FakeJson.TryGet(element, "input", out var input) ? input.GetRawText() : "")),
            "tool_result" => ToolResultTokens(element),
            "thinking" => Estimate(FakeJson.GetString(element, "thinking") ?? ""),
            "redacted_thinking" => Estimate(FakeJson.GetString(element, "data") ?? ""),
            _ => Estimate(element.GetRawText()),
        };
    }

    private static long ToolResultTokens(JsonElement element)
    {
        if (!FakeJson.TryGet(element, "content", out var content))
        {
            return 1;
        }

        if (content.ValueKind == JsonValueKind.String)
        {
            return Estimate(content.GetString()!);
        }

        long tokens = 0;
        if (content.ValueKind == JsonValueKind.Array)
        {
            foreach (var inner in content.EnumerateArray())
            {
                var type = FakeJson.GetString(inner, "type");
                tokens += type switch
                {
                    "text" => Estimate(FakeJson.GetString(inner, "text") ?? ""),
                    "image" => ImageTokens,
                    _ => Estimate(inner.GetRawText()),
                };
            }
        }

        return tokens;
    }

    private static string? CacheTtl(JsonElement element) =>
        FakeJson.TryGet(element, "cache_control", out var cacheControl) ? Ttl(cacheControl) : null;

    private static string Ttl(JsonElement cacheControl) => FakeJson.GetString(cacheControl, "ttl") == "1h" ? "1h" : "5m";
}
