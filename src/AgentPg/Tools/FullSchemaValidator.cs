using System.Runtime.CompilerServices;
using System.Text.Json;
using Json.Schema;

namespace AgentPg.Tools;

/// <summary>Validates a tool input against a complete JSON Schema (JsonSchema.Net) when the tool's schema uses keywords
/// that <see cref="ToolSchema"/> does not model (<c>anyOf</c>, <c>$ref</c>, <c>additionalProperties</c> …).</summary>
/// <remarks>Schemas within the modelled subset keep <see cref="ToolInputValidator"/>'s checks and messages. A compiled
/// schema is cached per <see cref="ToolSchema"/> instance, so the hot path compiles nothing.</remarks>
internal static class FullSchemaValidator
{
    private const int MaxReportedProblems = 10;

    // Keywords ToolInputValidator checks exactly, plus annotations that never constrain an instance.
    private static readonly HashSet<string> s_modelled = new(StringComparer.Ordinal)
    {
        "type", "properties", "required", "enum", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "minLength", "maxLength", "pattern", "items", "minItems", "maxItems",
        "description", "title", "default", "examples", "$schema", "$comment", "$id", "readOnly", "writeOnly", "deprecated",
    };

    private static readonly ConditionalWeakTable<ToolSchema, Entry> s_cache = [];

    /// <summary>Returns whether validating against <paramref name="schema"/> needs the full JSON Schema validator.</summary>
    public static bool IsNeeded(ToolSchema schema)
        => schema.JsonSchema is { } json && s_cache.GetValue(schema, _ => new Entry(!IsModelled(json))).Needed;

    /// <summary>Compiles the schema (at registration), so a schema JsonSchema.Net cannot use fails there, not at a call.</summary>
    /// <exception cref="ArgumentException">The schema cannot be compiled (for example a <c>$ref</c> that does not resolve).</exception>
    public static void EnsureUsable(string toolName, ToolSchema schema)
    {
        if (IsNeeded(schema))
        {
            _ = Get(toolName, schema);
        }
    }

    /// <summary>Validates <paramref name="input"/>; null when valid, otherwise a message for the model.</summary>
    public static string? Validate(string toolName, ToolSchema schema, JsonElement input)
    {
        var compiled = Get(toolName, schema);
        EvaluationResults results;
        try
        {
            results = compiled.Evaluate(input, new EvaluationOptions { OutputFormat = OutputFormat.Hierarchical });
        }
        catch (Exception ex) when (ex is JsonSchemaException or RefResolutionException or System.Text.RegularExpressions.RegexMatchTimeoutException or ArgumentException or InvalidOperationException or FormatException)
        {
            return $"Invalid input for tool '{toolName}': it could not be checked against the tool's schema ({ex.Message}). Call the tool again with simpler input that matches its schema.";
        }

        if (results.IsValid)
        {
            return null;
        }

        var problems = new List<string>();
        Collect(results, problems);
        if (problems.Count == 0)
        {
            problems.Add("the input does not match the tool's JSON schema");
        }

        var shown = problems.Distinct(StringComparer.Ordinal).ToList();
        var total = shown.Count;
        shown = [.. shown.Take(MaxReportedProblems)];
        var more = total > shown.Count ? $" (and {total - shown.Count} more)" : "";
        return $"Invalid input for tool '{toolName}': {string.Join("; ", shown)}{more}. Call the tool again with input that matches its schema.";
    }

    /// <summary>Collects the errors of failing nodes only: a failed branch of an <c>anyOf</c> that passed is no problem.</summary>
    private static void Collect(EvaluationResults results, List<string> problems)
    {
        if (results.IsValid)
        {
            return;
        }

        if (results.Errors is { Count: > 0 } errors)
        {
            var location = results.InstanceLocation.ToString();
            var where = location.Length == 0 ? "the input" : $"'{location.TrimStart('/').Replace('/', '.')}'";
            var schemaPath = results.EvaluationPath.ToString();
            foreach (var (keyword, message) in errors)
            {
                var at = keyword.Length == 0 ? schemaPath : $"{schemaPath}/{keyword}";
                problems.Add($"{where}: {message} (schema {(at.Length == 0 ? "/" : at)})");
            }
        }

        if (results.Details is { } details)
        {
            foreach (var detail in details)
            {
                Collect(detail, problems);
            }
        }
    }

    /// <summary>Every <c>$ref</c> into the schema itself (<c>#/…</c>) must point at something.</summary>
    private static string? FindBrokenLocalRef(JsonElement root, JsonElement node)
    {
        switch (node.ValueKind)
        {
            case JsonValueKind.Object:
                foreach (var property in node.EnumerateObject())
                {
                    if (property.Name == "$ref" && property.Value.ValueKind == JsonValueKind.String
                        && property.Value.GetString() is ['#', ..] reference
                        && !(reference.Length == 1
                             || (Json.Pointer.JsonPointer.TryParse(Uri.UnescapeDataString(reference[1..]), out var pointer)
                                 && pointer.Evaluate(root) is not null)))
                    {
                        return reference;
                    }

                    if (FindBrokenLocalRef(root, property.Value) is { } broken)
                    {
                        return broken;
                    }
                }

                break;
            case JsonValueKind.Array:
                foreach (var item in node.EnumerateArray())
                {
                    if (FindBrokenLocalRef(root, item) is { } broken)
                    {
                        return broken;
                    }
                }

                break;
        }

        return null;
    }

    private static JsonSchema Get(string toolName, ToolSchema schema)
    {
        var entry = s_cache.GetValue(schema, _ => new Entry(true));
        if (entry.Compiled is { } cached)
        {
            return cached;
        }

        var json = schema.JsonSchema ?? throw new InvalidOperationException("The tool schema has no JSON Schema.");
        if (FindBrokenLocalRef(json, json) is { } broken)
        {
            throw new ArgumentException(
                $"Tool '{toolName}' has an input schema that cannot be used to validate input: \"$ref\": \"{broken}\" points at nothing in the schema.",
                nameof(schema));
        }

        try
        {
            // Each schema gets its own registry: two tools with the same $id never see each other's definitions. A schema
            // without $schema is 2020-12 (as MCP specifies), whose unknown keywords are annotations: JsonSchema.Net's own
            // default dialect (v1) refuses them, and with them schemas such as MCP's x-mcp-header or Pydantic's discriminator.
            var built = JsonSchema.Build(json, new BuildOptions { SchemaRegistry = new SchemaRegistry(), Dialect = Dialect.Draft202012 });
            entry.Compiled = built;
            return built;
        }
        catch (Exception ex) when (ex is JsonSchemaException or RefResolutionException or ArgumentException or InvalidOperationException
                                       or FormatException or KeyNotFoundException or JsonException)
        {
            throw new ArgumentException(
                $"Tool '{toolName}' has an input schema that cannot be used to validate input: {ex.Message}. " +
                "Make every $ref point inside the schema (#/$defs/…) and use JSON Schema draft 6, 7, 2019-09 or 2020-12.", nameof(schema), ex);
        }
    }

    /// <summary>True when every keyword in the schema is one <see cref="ToolInputValidator"/> checks the same way.</summary>
    private static bool IsModelled(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object)
        {
            return false;
        }

        foreach (var keyword in schema.EnumerateObject())
        {
            if (!s_modelled.Contains(keyword.Name))
            {
                return false;
            }

            var value = keyword.Value;
            var simple = keyword.Name switch
            {
                "type" => value.ValueKind == JsonValueKind.String
                          || (value.ValueKind == JsonValueKind.Array
                              && value.EnumerateArray().All(t => t.ValueKind == JsonValueKind.String)
                              && value.EnumerateArray().Count(t => t.GetString() != "null") == 1),
                "enum" => value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(v => v.ValueKind == JsonValueKind.String),
                "properties" => value.ValueKind == JsonValueKind.Object && value.EnumerateObject().All(p => IsModelled(p.Value)),
                "items" => IsModelled(value),
                "required" => value.ValueKind == JsonValueKind.Array && value.EnumerateArray().All(v => v.ValueKind == JsonValueKind.String),
                "minimum" or "maximum" or "exclusiveMinimum" or "exclusiveMaximum" => value.ValueKind == JsonValueKind.Number,
                "minLength" or "maxLength" or "minItems" or "maxItems" => value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out _),
                "pattern" => value.ValueKind == JsonValueKind.String,
                _ => true,
            };
            if (!simple)
            {
                return false;
            }
        }

        return true;
    }

    private sealed class Entry(bool needed)
    {
        public bool Needed { get; } = needed;

        public JsonSchema? Compiled { get; set; }
    }
}
