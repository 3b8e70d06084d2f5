using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.Tools;

/// <summary>The tool through which an agent delegates to one of its agents (agent as tool): one input, the task. Claude is
/// offered <see cref="InputSchema"/> and the model's input is validated against the same schema.</summary>
internal static class DelegateTool
{
    /// <summary>The name of the input property that holds the delegated task (the child run's prompt).</summary>
    public const string TaskProperty = "task";

    /// <summary>The input schema of every delegate tool.</summary>
    public static readonly ToolSchema Schema = new()
    {
        Properties = new Dictionary<string, PropertyDef>
        {
            [TaskProperty] = new() { Type = "string", MinLength = 1, Description = "The task to delegate to this agent" },
        },
        Required = [TaskProperty],
    };

    // Built once from Schema; DeepClone it before putting it into a request (a node has one parent).
    private static readonly JsonObject s_inputSchemaJson = Schema.ToJsonObject();

    /// <summary>A fresh copy of <see cref="Schema"/> as JSON, for a request's tool definition.</summary>
    public static JsonObject InputSchema() => (JsonObject)s_inputSchemaJson.DeepClone();

    /// <summary>The task of a delegate tool's input; empty when there is none (the input was validated when it was recorded).</summary>
    public static string TaskOf(JsonElement input)
        => input.ValueKind == JsonValueKind.Object && input.TryGetProperty(TaskProperty, out var task) && task.ValueKind == JsonValueKind.String
            ? task.GetString()!
            : "";
}
