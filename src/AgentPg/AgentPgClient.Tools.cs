using AgentPg.Diagnostics;
using AgentPg.Internal;
using AgentPg.Storage;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Registers a tool on this instance (before or after <see cref="StartAsync"/>).</summary>
    /// <param name="tool">The tool. A tool with the same name replaces the previous one.</param>
    /// <remarks>Runs of agents that list tools are only claimed by instances that registered all of them. When the
    /// client is started, the registration is written to the database in the background.</remarks>
    /// <exception cref="ArgumentException">The name does not match <c>^[a-zA-Z0-9_-]{1,64}$</c>, the description is missing,
    /// or the input schema is not an object schema.</exception>
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
    /// claimed by this instance completes as failed with "tool not found".</remarks>
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

        if (tool.InputSchema.JsonSchema is not null)
        {
            // A complete JSON Schema may define required properties elsewhere (allOf, $ref …); it must compile.
            Tools.FullSchemaValidator.EnsureUsable(tool.Name, tool.InputSchema);
            return;
        }

        foreach (var required in tool.InputSchema.Required)
        {
            if (!tool.InputSchema.Properties.ContainsKey(required))
            {
                throw new ArgumentException(
                    $"Tool '{tool.Name}' requires property '{required}', which its input schema does not define.", nameof(tool));
            }
        }
    }
}
