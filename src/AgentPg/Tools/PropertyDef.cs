using System.Text.Json;

namespace AgentPg;

/// <summary>The JSON schema of one property of a tool's input.</summary>
/// <remarks>Inputs are validated against every constraint set here before the tool runs.</remarks>
public sealed record PropertyDef
{
    /// <summary>Gets the JSON type: <c>string</c>, <c>number</c>, <c>integer</c>, <c>boolean</c>, <c>array</c> or <c>object</c>;
    /// <see langword="null"/> accepts any value.</summary>
    public string? Type { get; init; }

    /// <summary>Gets whether JSON <c>null</c> is accepted in addition to <see cref="Type"/>.</summary>
    public bool Nullable { get; init; }

    /// <summary>Gets the description Claude reads.</summary>
    public string? Description { get; init; }

    /// <summary>Gets the allowed values of a string property.</summary>
    public IReadOnlyList<string>? Enum { get; init; }

    /// <summary>Gets the default value shown to Claude.</summary>
    public JsonElement? Default { get; init; }

    /// <summary>Gets the inclusive lower bound of a number.</summary>
    public double? Minimum { get; init; }

    /// <summary>Gets the inclusive upper bound of a number.</summary>
    public double? Maximum { get; init; }

    /// <summary>Gets the exclusive lower bound of a number.</summary>
    public double? ExclusiveMinimum { get; init; }

    /// <summary>Gets the exclusive upper bound of a number.</summary>
    public double? ExclusiveMaximum { get; init; }

    /// <summary>Gets the minimum length of a string, in characters.</summary>
    public int? MinLength { get; init; }

    /// <summary>Gets the maximum length of a string, in characters.</summary>
    public int? MaxLength { get; init; }

    /// <summary>Gets the regular expression a string must match (ECMAScript-style, unanchored unless it anchors itself).</summary>
    public string? Pattern { get; init; }

    /// <summary>Gets the schema of the elements of an array.</summary>
    public PropertyDef? Items { get; init; }

    /// <summary>Gets the minimum number of elements of an array.</summary>
    public int? MinItems { get; init; }

    /// <summary>Gets the maximum number of elements of an array.</summary>
    public int? MaxItems { get; init; }

    /// <summary>Gets the properties of a nested object.</summary>
    public IReadOnlyDictionary<string, PropertyDef>? Properties { get; init; }

    /// <summary>Gets the required properties of a nested object.</summary>
    public IReadOnlyList<string>? Required { get; init; }
}
