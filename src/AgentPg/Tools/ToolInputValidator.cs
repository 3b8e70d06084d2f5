using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;

namespace AgentPg.Tools;

/// <summary>Checks a model-produced tool input against the tool's schema before the tool runs.</summary>
internal static class ToolInputValidator
{
    private const int MaxReportedProblems = 10;
    private static readonly TimeSpan s_regexTimeout = TimeSpan.FromMilliseconds(200);

    /// <summary>Returns null when the input is valid, otherwise a message for the model listing what is wrong.</summary>
    public static string? Validate(string toolName, ToolSchema schema, JsonElement input)
    {
        if (FullSchemaValidator.IsNeeded(schema))
        {
            return FullSchemaValidator.Validate(toolName, schema, input);
        }

        var problems = new List<string>();
        if (input.ValueKind != JsonValueKind.Object)
        {
            problems.Add($"the input must be a JSON object, not {Describe(input.ValueKind)}");
        }
        else
        {
            ValidateObject("", schema.Properties, schema.Required, input, problems);
        }

        if (problems.Count == 0)
        {
            return null;
        }

        var shown = problems.Take(MaxReportedProblems).ToList();
        var more = problems.Count > shown.Count ? $" (and {problems.Count - shown.Count} more)" : "";
        return $"Invalid input for tool '{toolName}': {string.Join("; ", shown)}{more}. Call the tool again with input that matches its schema.";
    }

    private static void ValidateObject(string path, IReadOnlyDictionary<string, PropertyDef>? properties, IReadOnlyList<string>? required, JsonElement value, List<string> problems)
    {
        foreach (var name in required ?? [])
        {
            if (!value.TryGetProperty(name, out _))
            {
                problems.Add($"'{Join(path, name)}' is required");
            }
        }

        if (properties is null)
        {
            return;
        }

        foreach (var property in value.EnumerateObject())
        {
            if (properties.TryGetValue(property.Name, out var definition))
            {
                ValidateValue(Join(path, property.Name), definition, property.Value, problems);
            }
        }
    }

    private static void ValidateValue(string path, PropertyDef definition, JsonElement value, List<string> problems)
    {
        if (value.ValueKind == JsonValueKind.Null)
        {
            if (definition.Type is not null && !definition.Nullable)
            {
                problems.Add($"'{path}' must be {Article(definition.Type)}, not null");
            }

            return;
        }

        if (definition.Type is { } type && !HasType(value, type))
        {
            problems.Add($"'{path}' must be {Article(type)}, not {Describe(value.ValueKind)}");
            return;
        }

        switch (value.ValueKind)
        {
            case JsonValueKind.String:
                ValidateString(path, definition, value.GetString()!, problems);
                break;
            case JsonValueKind.Number:
                ValidateNumber(path, definition, value.GetDouble(), problems);
                break;
            case JsonValueKind.Array:
                var count = value.GetArrayLength();
                if (definition.MinItems is { } minItems && count < minItems)
                {
                    problems.Add($"'{path}' must have at least {minItems} items (has {count})");
                }

                if (definition.MaxItems is { } maxItems && count > maxItems)
                {
                    problems.Add($"'{path}' must have at most {maxItems} items (has {count})");
                }

                if (definition.Items is { } items)
                {
                    var i = 0;
                    foreach (var element in value.EnumerateArray())
                    {
                        ValidateValue($"{path}[{i++}]", items, element, problems);
                    }
                }

                break;
            case JsonValueKind.Object:
                ValidateObject(path, definition.Properties, definition.Required, value, problems);
                break;
        }
    }

    private static void ValidateString(string path, PropertyDef definition, string text, List<string> problems)
    {
        if (definition.Enum is { Count: > 0 } allowed && !allowed.Contains(text, StringComparer.Ordinal))
        {
            problems.Add($"'{path}' must be one of [{string.Join(", ", allowed)}] (got \"{Truncate(text)}\")");
        }

        var length = text.EnumerateRunes().Count();
        if (definition.MinLength is { } minLength && length < minLength)
        {
            problems.Add($"'{path}' must be at least {minLength} characters long (is {length})");
        }

        if (definition.MaxLength is { } maxLength && length > maxLength)
        {
            problems.Add($"'{path}' must be at most {maxLength} characters long (is {length})");
        }

        if (!string.IsNullOrEmpty(definition.Pattern))
        {
            try
            {
                if (!Regex.IsMatch(text, definition.Pattern, RegexOptions.CultureInvariant, s_regexTimeout))
                {
                    problems.Add($"'{path}' must match the pattern {definition.Pattern} (got \"{Truncate(text)}\")");
                }
            }
            catch (RegexMatchTimeoutException)
            {
                problems.Add($"'{path}' could not be checked against the pattern {definition.Pattern} in time");
            }
            catch (ArgumentException)
            {
                // The tool's own pattern is not a valid .NET regular expression: not the model's fault; do not block it.
            }
        }
    }

    private static void ValidateNumber(string path, PropertyDef definition, double number, List<string> problems)
    {
        if (definition.Minimum is { } min && number < min)
        {
            problems.Add($"'{path}' must be at least {Format(min)} (got {Format(number)})");
        }

        if (definition.Maximum is { } max && number > max)
        {
            problems.Add($"'{path}' must be at most {Format(max)} (got {Format(number)})");
        }

        if (definition.ExclusiveMinimum is { } exclusiveMin && number <= exclusiveMin)
        {
            problems.Add($"'{path}' must be greater than {Format(exclusiveMin)} (got {Format(number)})");
        }

        if (definition.ExclusiveMaximum is { } exclusiveMax && number >= exclusiveMax)
        {
            problems.Add($"'{path}' must be less than {Format(exclusiveMax)} (got {Format(number)})");
        }
    }

    private static bool HasType(JsonElement value, string type) => type switch
    {
        "string" => value.ValueKind == JsonValueKind.String,
        "number" => value.ValueKind == JsonValueKind.Number,
        // JSON Schema: any number without a fractional part, so 3.0 is an integer.
        "integer" => value.ValueKind == JsonValueKind.Number && value.GetDouble() is var d && Math.Floor(d) == d && !double.IsInfinity(d),
        "boolean" => value.ValueKind is JsonValueKind.True or JsonValueKind.False,
        "array" => value.ValueKind == JsonValueKind.Array,
        "object" => value.ValueKind == JsonValueKind.Object,
        "null" => value.ValueKind == JsonValueKind.Null,
        _ => true,
    };

    private static string Describe(JsonValueKind kind) => kind switch
    {
        JsonValueKind.Object => "an object",
        JsonValueKind.Array => "an array",
        JsonValueKind.String => "a string",
        JsonValueKind.Number => "a number",
        JsonValueKind.True or JsonValueKind.False => "a boolean",
        JsonValueKind.Null => "null",
        _ => "nothing",
    };

    private static string Article(string type) => type switch
    {
        "integer" or "object" or "array" => "an " + type,
        _ => "a " + type,
    };

    private static string Join(string path, string name) => path.Length == 0 ? name : path + "." + name;

    private static string Truncate(string text) => text.Length <= 60 ? text : text[..57] + "...";

    private static string Format(double value) => value.ToString("0.################", CultureInfo.InvariantCulture);
}
