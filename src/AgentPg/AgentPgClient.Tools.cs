using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Storage;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    private static readonly string[] s_jsonTypes = ["string", "number", "integer", "boolean", "array", "object", "null"];

    /// <summary>Registers a tool on this instance (before or after <see cref="StartAsync"/>).</summary>
    /// <param name="tool">The tool. A tool with the same name replaces the previous one.</param>
    /// <remarks>Runs of agents that list tools are only claimed by instances that registered all of them. When the
    /// client is started, the registration is written to the database in the background.</remarks>
    /// <exception cref="ArgumentException">The name does not match <c>^[a-zA-Z0-9_-]{1,64}$</c>, the description is missing,
    /// the input schema is not an object schema or cannot be used (a null <see cref="ToolSchema.Properties"/>,
    /// <see cref="ToolSchema.Required"/> or property, a type that is not a JSON Schema type, a pattern that is not a regular
    /// expression, bounds no value satisfies such as a <see cref="PropertyDef.Minimum"/> above the <see cref="PropertyDef.Maximum"/>,
    /// a negative length or item count, or an empty <see cref="PropertyDef.Enum"/>), or the description or schema contains U+0000 or an unpaired surrogate. The message says which.</exception>
    public void RegisterTool(ITool tool)
    {
        ArgumentNullException.ThrowIfNull(tool);
        ValidateTool(tool);
        _tools[tool.Name] = tool;
        if (_started)
        {
            _ = _registration.SyncToolInBackgroundAsync(tool.Name);
        }
    }

    /// <summary>Removes a registered tool from this instance (for example one its source no longer offers).</summary>
    /// <param name="name">The tool name.</param>
    /// <returns><see langword="true"/> when a tool with that name was registered.</returns>
    /// <remarks>Runs of agents that list the tool are no longer claimed by this instance. When the client is started,
    /// the instance's registration is removed from the database in the background. An execution of the tool already
    /// claimed by this instance goes back to the queue for another instance that registers the tool (the attempt is not
    /// counted); when no other instance registers it, it completes as failed with "tool not found".</remarks>
    public bool UnregisterTool(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!_tools.TryRemove(name, out _))
        {
            return false;
        }

        if (_started)
        {
            _ = _registration.SyncToolInBackgroundAsync(name);
        }

        return true;
    }

    /// <summary>Registers a Microsoft.Extensions.AI function as a tool (see <see cref="FunctionTool.Create(Microsoft.Extensions.AI.AIFunction)"/>).</summary>
    /// <param name="function">The function, for example one made with <c>AIFunctionFactory.Create</c>.</param>
    /// <exception cref="ArgumentException">The function's name does not match <c>^[a-zA-Z0-9_-]{1,64}$</c>.</exception>
    public void RegisterTool(Microsoft.Extensions.AI.AIFunction function) => RegisterTool(FunctionTool.Create(function));

    /// <summary>Gets a registered tool.</summary>
    /// <param name="name">The tool name.</param>
    /// <returns>The tool, or <see langword="null"/> when none has that name.</returns>
    public ITool? GetTool(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        return _tools.GetValueOrDefault(name);
    }

    /// <summary>Gets the names of the registered tools, sorted.</summary>
    /// <returns>The names (empty when none).</returns>
    public IReadOnlyList<string> GetAllToolNames() => [.. _tools.Keys.Order(StringComparer.Ordinal)];

    internal static void ValidateTool(ITool tool)
    {
        if (!ToolNames.IsValid(tool.Name))
        {
            throw new ArgumentException(
                $"Tool name '{tool.Name}' is invalid: Claude requires 1 to 64 letters, digits, '_' or '-' ({ToolNames.Rule}).", nameof(tool));
        }

        if (tool.Description is null)
        {
            throw new ArgumentException($"Tool '{tool.Name}' has no description; Claude needs one to know when to call it.", nameof(tool));
        }

        if (tool.InputSchema is null)
        {
            throw new ArgumentException($"Tool '{tool.Name}' has no input schema; use new ToolSchema() for a tool without parameters.", nameof(tool));
        }

        if (tool.InputSchema.Type != "object")
        {
            throw new ArgumentException(
                $"Tool '{tool.Name}' has an input schema of type '{tool.InputSchema.Type}'; Claude requires type 'object'.", nameof(tool));
        }

        // The description and the schema are stored with the instance's registration (agentpg_tools).
        Nul.Reject(tool.Description, nameof(tool), $"The description of tool '{tool.Name}'");
        if (tool.InputSchema.JsonSchema is not null)
        {
            // A complete JSON Schema may define required properties elsewhere (allOf, $ref …); it must compile.
            Tools.FullSchemaValidator.EnsureUsable(tool.Name, tool.InputSchema);
            Nul.RejectInJson(tool.InputSchema.ToJson(), nameof(tool), $"The input schema of tool '{tool.Name}'");
            return;
        }

        if (tool.InputSchema.Properties is null || tool.InputSchema.Required is null)
        {
            throw new ArgumentException(
                $"Tool '{tool.Name}' has an input schema whose {(tool.InputSchema.Properties is null ? "Properties" : "Required")} is null; leave the " +
                "default (empty) for a tool without parameters.", nameof(tool));
        }

        CheckProperties(tool.Name, "", tool.InputSchema.Properties, tool.InputSchema.Required, nameof(tool));
        Nul.RejectInJson(tool.InputSchema.ToJson(), nameof(tool), $"The input schema of tool '{tool.Name}'");
    }

    // What Claude would refuse (an unknown type) or what would make a property impossible to check (a null definition, a
    // pattern that does not compile) is the developer's to fix, at registration, not a failure of every run that offers the tool.
    private static void CheckProperties(string toolName, string path, IReadOnlyDictionary<string, PropertyDef>? properties, IReadOnlyList<string>? required,
        string paramName)
    {
        foreach (var (name, property) in properties ?? System.Collections.ObjectModel.ReadOnlyDictionary<string, PropertyDef>.Empty)
        {
            if (property is null)
            {
                throw new ArgumentException(
                    $"Tool '{toolName}' has a null definition for property '{path}{name}'; define it (for example new PropertyDef {{ Type = \"string\" }}) " +
                    "or remove it.", paramName);
            }

            CheckProperty(toolName, path + name, property, paramName);
        }

        foreach (var name in required ?? [])
        {
            // A nested object without Properties may require names of any value (JSON Schema allows it); the input schema
            // itself must define what it requires.
            if (name is null || (properties is not null && !properties.ContainsKey(name)))
            {
                throw new ArgumentException(
                    $"Tool '{toolName}' requires property '{path}{name}', which its input schema does not define.", paramName);
            }
        }
    }

    // Bounds no value can satisfy would make every input the model writes fail validation (and be retried as model errors):
    // the schema is wrong, not the model.
    private static void CheckBounds(string toolName, string path, PropertyDef property, string paramName)
    {
        if (property.Enum is { Count: 0 })
        {
            throw Unsatisfiable("an empty Enum (no value is allowed)");
        }

        if (property.Minimum > property.Maximum)
        {
            throw Unsatisfiable($"Minimum {property.Minimum} above Maximum {property.Maximum}");
        }

        if (property.ExclusiveMinimum is { } exclusiveMinimum &&
            (exclusiveMinimum >= property.Maximum || exclusiveMinimum >= property.ExclusiveMaximum))
        {
            throw Unsatisfiable($"ExclusiveMinimum {exclusiveMinimum} not below {(exclusiveMinimum >= property.Maximum ? $"Maximum {property.Maximum}" : $"ExclusiveMaximum {property.ExclusiveMaximum}")}");
        }

        if (property.Minimum >= property.ExclusiveMaximum)
        {
            throw Unsatisfiable($"Minimum {property.Minimum} not below ExclusiveMaximum {property.ExclusiveMaximum}");
        }

        CheckCounts("MinLength", property.MinLength, "MaxLength", property.MaxLength);
        CheckCounts("MinItems", property.MinItems, "MaxItems", property.MaxItems);

        void CheckCounts(string minName, int? min, string maxName, int? max)
        {
            if (min < 0 || max < 0)
            {
                throw Unsatisfiable($"a negative {(min < 0 ? $"{minName} ({min})" : $"{maxName} ({max})")}");
            }

            if (min > max)
            {
                throw Unsatisfiable($"{minName} {min} above {maxName} {max}");
            }
        }

        ArgumentException Unsatisfiable(string what) => new(
            $"Tool '{toolName}' gives property '{path}' {what}: no input could pass it, so every call the model makes would be refused; " +
            "fix the bounds.", paramName);
    }

    private static void CheckProperty(string toolName, string path, PropertyDef property, string paramName)
    {
        if (property.Type is not null && !s_jsonTypes.Contains(property.Type, StringComparer.Ordinal))
        {
            throw new ArgumentException(
                $"Tool '{toolName}' gives property '{path}' the type '{property.Type}', which is not a JSON Schema type; use one of " +
                $"{string.Join(", ", s_jsonTypes)}, or null for any value.", paramName);
        }

        if (!string.IsNullOrEmpty(property.Pattern))
        {
            try
            {
                _ = new System.Text.RegularExpressions.Regex(property.Pattern, System.Text.RegularExpressions.RegexOptions.CultureInvariant);
            }
            catch (ArgumentException e)
            {
                throw new ArgumentException(
                    $"Tool '{toolName}' gives property '{path}' the pattern '{property.Pattern}', which is not a valid regular expression " +
                    $"({e.Message}); fix it, or the model's input could never be checked against it.", paramName, e);
            }
        }

        CheckBounds(toolName, path, property, paramName);

        if (property.Items is { } items)
        {
            CheckProperty(toolName, path + "[]", items, paramName);
        }

        if (property.Properties is not null || property.Required is not null)
        {
            CheckProperties(toolName, path + ".", property.Properties, property.Required, paramName);
        }
    }
}
