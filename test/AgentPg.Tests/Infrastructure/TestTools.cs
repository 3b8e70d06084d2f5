using System.Text.Json;

namespace AgentPg.Tests.Infrastructure;

/// <summary>A tool made of a name, a schema and a function, for tests.</summary>
public sealed class TestTool(string name, Func<ToolContext, JsonElement, CancellationToken, Task<string>>? execute = null, ToolSchema? schema = null) : ITool
{
    public string Name { get; } = name;

    public string Description { get; init; } = "A test tool";

    public ToolSchema InputSchema { get; init; } = schema ?? new ToolSchema();

    public bool Strict { get; init; }

    public bool EagerInputStreaming { get; init; }

    public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
        => execute is null ? Task.FromResult("ok") : execute(context, input, cancellationToken);
}

/// <summary><c>save_note</c>, a tool that takes a required <c>text</c> and records every note it saves, in order.</summary>
public sealed class NoteTool : ITool
{
    private readonly List<string> _saved = [];

    public string Name => "save_note";

    public string Description => "Saves a note";

    public ToolSchema InputSchema { get; } = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["text"] = new() { Type = "string" } },
        Required = ["text"],
    };

    /// <summary>The notes saved so far.</summary>
    public IReadOnlyList<string> Saved
    {
        get
        {
            lock (_saved)
            {
                return [.. _saved];
            }
        }
    }

    public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        lock (_saved)
        {
            _saved.Add(input.GetProperty("text").GetString()!);
        }

        return Task.FromResult("saved");
    }
}

/// <summary><c>search</c>, a tool that turns its cancellation into an exception of its own ("search aborted", catch and wrap)
/// at once when its token fires. It registers on the token only after <see cref="OpenGate"/>, so after the worker's own
/// registration (the worker waits on the body with the same token), and its callback runs first.</summary>
public sealed class CancellationWrappingTool : ITool
{
    private readonly TaskCompletionSource _started = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _gate = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _listening = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public string Name => "search";

    public string Description => "A test tool";

    public ToolSchema InputSchema { get; } = new();

    /// <summary>Completes when an execution started.</summary>
    public Task Started => _started.Task;

    /// <summary>Completes when the execution, past the gate, listens to its token.</summary>
    public Task Listening => _listening.Task;

    public void OpenGate() => _gate.TrySetResult();

    public async Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        _started.TrySetResult();
        await _gate.Task;
        var result = new TaskCompletionSource<string>();
        using var registration = cancellationToken.Register(() => result.TrySetException(new InvalidOperationException("search aborted")));
        _listening.TrySetResult();
        return await result.Task;
    }
}
