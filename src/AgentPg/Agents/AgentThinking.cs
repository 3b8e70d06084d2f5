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
/// <para>What a thinking block carries back is <see cref="Display"/>: a summary of the thinking, or nothing (the signature
/// alone carries the reasoning). Models differ in their default — Claude Opus 4.7 and later omit it — so an application
/// that shows <see cref="ThinkingDeltaEvent"/> to its users asks for <see cref="AgentThinkingDisplay.Summarized"/> with
/// <see cref="WithDisplay"/>, and one that never shows thinking can ask for <see cref="AgentThinkingDisplay.Omitted"/>,
/// whose answers start streaming sooner.</para>
/// </remarks>
public sealed record AgentThinking
{
    private AgentThinking(AgentThinkingType type, int? budgetTokens, AgentThinkingDisplay? display = null)
    {
        Type = type;
        BudgetTokens = budgetTokens;
        Display = display;
    }

    /// <summary>Gets the kind of thinking.</summary>
    public AgentThinkingType Type { get; }

    /// <summary>Gets the most tokens Claude may spend thinking per model call, for <see cref="AgentThinkingType.Enabled"/>;
    /// otherwise <see langword="null"/>.</summary>
    public int? BudgetTokens { get; }

    /// <summary>Gets what Claude's thinking blocks carry back (Claude's <c>thinking.display</c>), or <see langword="null"/>
    /// to send none and get the model's default.</summary>
    public AgentThinkingDisplay? Display { get; }

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

    /// <summary>The same thinking with the given <see cref="Display"/>, for example
    /// <c>AgentThinking.Adaptive.WithDisplay(AgentThinkingDisplay.Summarized)</c>.</summary>
    /// <param name="display">What Claude's thinking blocks carry back.</param>
    /// <returns>The setting.</returns>
    /// <exception cref="InvalidOperationException">The thinking is <see cref="Disabled"/>: there is nothing to display.</exception>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="display"/> is not an <see cref="AgentThinkingDisplay"/> value.</exception>
    public AgentThinking WithDisplay(AgentThinkingDisplay display)
    {
        if (Type == AgentThinkingType.Disabled)
        {
            throw new InvalidOperationException(
                "AgentThinking.Disabled takes no display: choose AgentThinking.Adaptive or AgentThinking.Enabled(budgetTokens) first.");
        }

        _ = ToWire(display);
        return new(Type, BudgetTokens, display);
    }

    /// <summary>The request field, for example <c>{"type":"enabled","budget_tokens":2048}</c> or
    /// <c>{"type":"adaptive","display":"summarized"}</c>.</summary>
    internal string ToJson()
    {
        var display = Display is { } d ? ",\"display\":\"" + ToWire(d) + "\"" : "";
        return Type switch
        {
            AgentThinkingType.Enabled => string.Create(System.Globalization.CultureInfo.InvariantCulture, $$"""{"type":"enabled","budget_tokens":{{BudgetTokens}}{{display}}}"""),
            AgentThinkingType.Adaptive => $$"""{"type":"adaptive"{{display}}}""",
            _ => """{"type":"disabled"}""",
        };
    }

    private static string ToWire(AgentThinkingDisplay display) => display switch
    {
        AgentThinkingDisplay.Summarized => "summarized",
        AgentThinkingDisplay.Omitted => "omitted",
        _ => throw new ArgumentOutOfRangeException(nameof(display), display, "Not an AgentThinkingDisplay value."),
    };

    /// <summary>Reads what <see cref="ToJson"/> wrote.</summary>
    internal static AgentThinking FromJson(string json)
    {
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        var thinking = root.GetProperty("type").GetString() switch
        {
            "enabled" => Enabled(root.GetProperty("budget_tokens").GetInt32()),
            "adaptive" => Adaptive,
            _ => Disabled,
        };
        return root.TryGetProperty("display", out var display)
            ? thinking.WithDisplay(display.GetString() == "omitted" ? AgentThinkingDisplay.Omitted : AgentThinkingDisplay.Summarized)
            : thinking;
    }
}

/// <summary>What Claude's thinking blocks carry back: Claude's <c>thinking.display</c>, set with
/// <see cref="AgentThinking.WithDisplay"/>.</summary>
public enum AgentThinkingDisplay
{
    /// <summary><c>"summarized"</c>: a summary of the thinking streams into the block (<see cref="ThinkingDeltaEvent"/>);
    /// billed for the full thinking, not the summary.</summary>
    Summarized,

    /// <summary><c>"omitted"</c>: the block's thinking text is empty and its signature carries the reasoning; no
    /// <see cref="ThinkingDeltaEvent"/>, and the answer starts streaming sooner.</summary>
    Omitted,
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
