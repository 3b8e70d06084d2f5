using System.Text.Json;

namespace AgentPg.Tests.Infrastructure;

/// <summary>A tool made of a name, a schema and a function, for tests.</summary>
public sealed class TestTool(string name, Func<ToolContext, JsonElement, CancellationToken, Task<string>>? execute = null, ToolSchema? schema = null) : ITool
{
    public string Name { get; } = name;

    public string Description { get; init; } = "A test tool";

    public ToolSchema InputSchema { get; init; } = schema ?? new ToolSchema();

    public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
        => execute is null ? Task.FromResult("ok") : execute(context, input, cancellationToken);
}
