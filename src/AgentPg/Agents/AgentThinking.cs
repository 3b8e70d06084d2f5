using System.Text.Json;

namespace AgentPg;

/// <summary>Whether and how Claude thinks before it answers: Claude's <c>thinking</c> request field, set per agent with
/// <see cref="AgentDefinition.Thinking"/>.</summary>
/// <remarks>
/// <para><see cref="Adaptive"/> lets Claude decide when and how much to think, steered by <see cref="AgentDefinition.Effort"/>;
/// it is the mode of Claude Opus 4.6, Sonnet 4.6 and later models, which deprecate (and from Claude Opus 4.7 refuse)
/// <see cref="Enabled(int)"/>. <see cref="Enabled(int)"/> thinks with a fixed token budget, for the earlier Claude 4 and 3.7
/// models. <see cref="Disabled"/> sends an explicit <c>{"type":"disabled"}</c>; an agent without
/// <see cref="AgentDefinition.Thinking"/> sends no <c>thinking</c> field at all, so the model's default applies.</para>
/// <para>Thinking tokens count towards <see cref="AgentDefinition.MaxTokens"/>, and Claude's thinking blocks are stored with
/// their signatures and sent back unchanged on the next model calls of the conversation, as the API requires.</para>
/// </remarks>
public sealed record AgentThinking
{
    private AgentThinking(AgentThinkingType type, int? budgetTokens)
    {
        Type = type;
        BudgetTokens = budgetTokens;
    }

    /// <summary>Gets the kind of thinking.</summary>
    public AgentThinkingType Type { get; }

    /// <summary>Gets the most tokens Claude may spend thinking per model call, for <see cref="AgentThinkingType.Enabled"/>;
    /// otherwise <see langword="null"/>.</summary>
    public int? BudgetTokens { get; }

    /// <summary>Gets adaptive thinking (<c>{"type":"adaptive"}</c>): Claude decides when and how much to think, guided by
    /// <see cref="AgentDefinition.Effort"/>. Claude Opus 4.6, Sonnet 4.6 and later models.</summary>
    public static AgentThinking Adaptive { get; } = new(AgentThinkingType.Adaptive, null);

    /// <summary>Gets no thinking, said explicitly (<c>{"type":"disabled"}</c>).</summary>
    public static AgentThinking Disabled { get; } = new(AgentThinkingType.Disabled, null);

    /// <summary>Thinking with a fixed budget (<c>{"type":"enabled","budget_tokens":N}</c>), for models before Claude 4.6.</summary>
    /// <param name="budgetTokens">The most tokens Claude may spend thinking per model call: at least 1024 and less than the
    /// agent's <see cref="AgentDefinition.MaxTokens"/> (4096 when not set), which the agent's creation checks.</param>
    /// <returns>The setting.</returns>
    public static AgentThinking Enabled(int budgetTokens) => new(AgentThinkingType.Enabled, budgetTokens);

    /// <summary>The request field, for example <c>{"type":"enabled","budget_tokens":2048}</c>.</summary>
    internal string ToJson() => Type switch
    {
        AgentThinkingType.Enabled => string.Create(System.Globalization.CultureInfo.InvariantCulture, $$"""{"type":"enabled","budget_tokens":{{BudgetTokens}}}"""),
        AgentThinkingType.Adaptive => """{"type":"adaptive"}""",
        _ => """{"type":"disabled"}""",
    };

    /// <summary>Reads what <see cref="ToJson"/> wrote.</summary>
    internal static AgentThinking FromJson(string json)
    {
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        return root.GetProperty("type").GetString() switch
        {
            "enabled" => Enabled(root.GetProperty("budget_tokens").GetInt32()),
            "adaptive" => Adaptive,
            _ => Disabled,
        };
    }
}

/// <summary>The kinds of <see cref="AgentThinking"/>.</summary>
public enum AgentThinkingType
{
    /// <summary>No thinking (<c>{"type":"disabled"}</c>).</summary>
    Disabled,

    /// <summary>Thinking with a fixed token budget (<c>{"type":"enabled","budget_tokens":N}</c>).</summary>
    Enabled,

    /// <summary>Claude decides when and how much to think (<c>{"type":"adaptive"}</c>).</summary>
    Adaptive,
}

/// <summary>How many tokens Claude may spend on an answer — thinking, text and tool calls alike: Claude's
/// <c>output_config.effort</c>, set per agent with <see cref="AgentDefinition.Effort"/>.</summary>
/// <remarks>Claude's default is <see cref="High"/>. Only recent models take an effort (Claude Opus 4.5, the 4.6 and later
/// models), and not every model takes every level: a model that does not answers 400, which fails the run.</remarks>
public enum AgentEffort
{
    /// <summary><c>"low"</c>: the fewest tokens, for simple tasks where speed and cost matter most.</summary>
    Low,

    /// <summary><c>"medium"</c>.</summary>
    Medium,

    /// <summary><c>"high"</c>, Claude's default.</summary>
    High,

    /// <summary><c>"xhigh"</c>.</summary>
    ExtraHigh,

    /// <summary><c>"max"</c>: the most capability, with no constraint on tokens.</summary>
    Max,
}

/// <summary>The wire values of <see cref="AgentEffort"/>.</summary>
internal static class AgentEfforts
{
    public static string ToWire(AgentEffort effort) => effort switch
    {
        AgentEffort.Low => "low",
        AgentEffort.Medium => "medium",
        AgentEffort.High => "high",
        AgentEffort.ExtraHigh => "xhigh",
        AgentEffort.Max => "max",
        _ => throw new ArgumentOutOfRangeException(nameof(effort), effort, "Not an AgentEffort value."),
    };

    public static AgentEffort FromWire(string value) => value switch
    {
        "low" => AgentEffort.Low,
        "medium" => AgentEffort.Medium,
        "high" => AgentEffort.High,
        "xhigh" => AgentEffort.ExtraHigh,
        "max" => AgentEffort.Max,
        _ => throw new ArgumentOutOfRangeException(nameof(value), value, "Not an effort level."),
    };
}
