using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg;

/// <summary>The JSON schema of a tool's input: always an object with named properties.</summary>
public sealed record ToolSchema
{
    /// <summary>Gets the schema type; it must be <c>object</c>.</summary>
    public string Type { get; init; } = "object";

    /// <summary>Gets a description of the input as a whole.</summary>
    public string? Description { get; init; }

    /// <summary>Gets the properties of the input object.</summary>
    public IReadOnlyDictionary<string, PropertyDef> Properties { get; init; } = new Dictionary<string, PropertyDef>();

    /// <summary>Gets the names of the properties Claude must provide.</summary>
    public IReadOnlyList<string> Required { get; init; } = [];

    /// <summary>Gets the complete JSON Schema this schema was read from by <see cref="FromJsonSchema"/>, or
    /// <see langword="null"/> for a schema built from its properties.</summary>
    /// <remarks>When set, it is what Claude receives as <c>input_schema</c>, unchanged, and what the model's input is
    /// validated against (every keyword, including <c>anyOf</c>, <c>$ref</c> and <c>additionalProperties</c>);
    /// <see cref="Properties"/> and <see cref="Required"/> are then only a reading of its modelled subset, and changing
    /// them with a <c>with</c> expression does not change what Claude sees.</remarks>
    public JsonElement? JsonSchema { get; private init; }

    /// <summary>Returns the schema as the JSON object sent to Claude as <c>input_schema</c>.</summary>
    /// <returns>A JSON object: a copy of <see cref="JsonSchema"/> when set, otherwise built from the properties.</returns>
    public JsonObject ToJsonObject()
    {
        if (JsonSchema is { } source)
        {
            return JsonNode.Parse(source.GetRawText())!.AsObject();
        }

        var obj = new JsonObject { ["type"] = Type };
        if (!string.IsNullOrEmpty(Description))
        {
            obj["description"] = Description;
        }

        var properties = new JsonObject();
        foreach (var (name, property) in Properties)
        {
            properties[name] = PropertyToJson(property);
        }

        obj["properties"] = properties;
        if (Required.Count > 0)
        {
            obj["required"] = new JsonArray([.. Required.Select(r => (JsonNode)JsonValue.Create(r))]);
        }

        return obj;
    }

    /// <summary>Returns the schema as JSON text.</summary>
    /// <returns>The JSON of <see cref="ToJsonObject"/>.</returns>
    public string ToJson() => JsonSchema is { } source ? source.GetRawText() : ToJsonObject().ToJsonString();

    /// <summary>Reads a JSON schema (for example one produced by <c>AIFunctionFactory</c> or an MCP server).</summary>
    /// <param name="schema">An object schema.</param>
    /// <returns>The schema. It keeps the complete JSON in <see cref="JsonSchema"/>: Claude receives it unchanged and the
    /// model's input is validated against all of it. <see cref="Properties"/> and <see cref="Required"/> hold the part
    /// this type can express (keywords such as <c>anyOf</c>, <c>$ref</c> or <c>format</c> have no property here).</returns>
    /// <exception cref="ArgumentException">The schema is not a JSON object, or its type is not <c>object</c>.</exception>
    public static ToolSchema FromJsonSchema(JsonElement schema)
    {
        if (schema.ValueKind != JsonValueKind.Object)
        {
            throw new ArgumentException($"A tool input schema must be a JSON object, not {schema.ValueKind}.", nameof(schema));
        }

        var (type, _) = ReadType(schema);
        if (type is not null && type != "object")
        {
            throw new ArgumentException($"A tool input schema must have type 'object', not '{type}'.", nameof(schema));
        }

        return new ToolSchema
        {
            Description = GetString(schema, "description"),
            Properties = ReadProperties(schema) ?? new Dictionary<string, PropertyDef>(),
            Required = ReadStringArray(schema, "required") ?? [],
            JsonSchema = schema.Clone(),
        };
    }

    private static JsonObject PropertyToJson(PropertyDef p)
    {
        var obj = new JsonObject();
        if (p.Type is not null)
        {
            obj["type"] = p.Nullable ? new JsonArray(p.Type, "null") : p.Type;
        }

        if (!string.IsNullOrEmpty(p.Description))
        {
            obj["description"] = p.Description;
        }

        if (p.Enum is { Count: > 0 })
        {
            obj["enum"] = new JsonArray([.. p.Enum.Select(e => (JsonNode)JsonValue.Create(e))]);
        }

        if (p.Default is { } d)
        {
            obj["default"] = JsonNode.Parse(d.GetRawText());
        }

        AddNumber(obj, "minimum", p.Minimum);
        AddNumber(obj, "maximum", p.Maximum);
        AddNumber(obj, "exclusiveMinimum", p.ExclusiveMinimum);
        AddNumber(obj, "exclusiveMaximum", p.ExclusiveMaximum);
        AddInt(obj, "minLength", p.MinLength);
        AddInt(obj, "maxLength", p.MaxLength);
        if (!string.IsNullOrEmpty(p.Pattern))
        {
            obj["pattern"] = p.Pattern;
        }

        if (p.Items is not null)
        {
            obj["items"] = PropertyToJson(p.Items);
        }

        AddInt(obj, "minItems", p.MinItems);
        AddInt(obj, "maxItems", p.MaxItems);
        if (p.Properties is not null)
        {
            var nested = new JsonObject();
            foreach (var (name, property) in p.Properties)
            {
                nested[name] = PropertyToJson(property);
            }

            obj["properties"] = nested;
        }

        if (p.Required is { Count: > 0 })
        {
            obj["required"] = new JsonArray([.. p.Required.Select(r => (JsonNode)JsonValue.Create(r))]);
        }

        return obj;
    }

    private static void AddNumber(JsonObject obj, string name, double? value)
    {
        if (value is { } v)
        {
            obj[name] = v == Math.Floor(v) && Math.Abs(v) < 1e15 ? JsonValue.Create((long)v) : JsonValue.Create(v);
        }
    }

    private static void AddInt(JsonObject obj, string name, int? value)
    {
        if (value is { } v)
        {
            obj[name] = v;
        }
    }

    private static Dictionary<string, PropertyDef>? ReadProperties(JsonElement schema)
    {
        if (!schema.TryGetProperty("properties", out var props) || props.ValueKind != JsonValueKind.Object)
        {
            return null;
        }

        var result = new Dictionary<string, PropertyDef>(StringComparer.Ordinal);
        foreach (var prop in props.EnumerateObject())
        {
            if (prop.Value.ValueKind == JsonValueKind.Object)
            {
                result[prop.Name] = ReadProperty(prop.Value);
            }
        }

        return result;
    }

    private static PropertyDef ReadProperty(JsonElement e)
    {
        var (type, nullable) = ReadType(e);
        return new PropertyDef
        {
            Type = type,
            Nullable = nullable,
            Description = GetString(e, "description"),
            Enum = ReadStringArray(e, "enum"),
            Default = e.TryGetProperty("default", out var d) ? d.Clone() : null,
            Minimum = GetDouble(e, "minimum"),
            Maximum = GetDouble(e, "maximum"),
            ExclusiveMinimum = GetDouble(e, "exclusiveMinimum"),
            ExclusiveMaximum = GetDouble(e, "exclusiveMaximum"),
            MinLength = GetInt(e, "minLength"),
            MaxLength = GetInt(e, "maxLength"),
            Pattern = GetString(e, "pattern"),
            Items = e.TryGetProperty("items", out var items) && items.ValueKind == JsonValueKind.Object ? ReadProperty(items) : null,
            MinItems = GetInt(e, "minItems"),
            MaxItems = GetInt(e, "maxItems"),
            Properties = ReadProperties(e),
            Required = ReadStringArray(e, "required"),
        };
    }

    // "type": "string" | ["string", "null"]; other unions are treated as "any type".
    private static (string? Type, bool Nullable) ReadType(JsonElement e)
    {
        if (!e.TryGetProperty("type", out var t))
        {
            return (null, false);
        }

        if (t.ValueKind == JsonValueKind.String)
        {
            return (t.GetString(), false);
        }

        if (t.ValueKind == JsonValueKind.Array)
        {
            var types = t.EnumerateArray().Where(x => x.ValueKind == JsonValueKind.String).Select(x => x.GetString()!).ToList();
            var nullable = types.Remove("null");
            return types.Count == 1 ? (types[0], nullable) : (null, nullable);
        }

        return (null, false);
    }

    private static string? GetString(JsonElement e, string name)
        => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.String ? v.GetString() : null;

    private static double? GetDouble(JsonElement e, string name)
        => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number ? v.GetDouble() : null;

    private static int? GetInt(JsonElement e, string name)
        => e.TryGetProperty(name, out var v) && v.ValueKind == JsonValueKind.Number && v.TryGetInt32(out var i) ? i : null;

    private static List<string>? ReadStringArray(JsonElement e, string name)
    {
        if (!e.TryGetProperty(name, out var v) || v.ValueKind != JsonValueKind.Array)
        {
            return null;
        }

        return [.. v.EnumerateArray().Select(x => x.ValueKind == JsonValueKind.String ? x.GetString()! : x.GetRawText())];
    }
}
