using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Storage;

namespace AgentPg.Memory;

/// <summary>Claude's memory tool, executed by AgentPg for agents with <see cref="AgentDefinition.Memory"/>: the tool worker runs it
/// like an <see cref="ITransactionalTool"/>, so a command's change and its tool_result commit together (exactly once across
/// crashes and retries).</summary>
/// <remarks>Not registered: it is offered only to agents with a memory, whose calls of <c>memory</c> are marked as memory calls
/// when they are recorded (any instance runs them).</remarks>
internal sealed class MemoryTool(MemorySql sql) : ITransactionalTool, IContentTool
{
    /// <summary>The name Claude calls the memory tool by (fixed by the protocol).</summary>
    public const string ToolName = "memory";

    /// <summary>The tool's <c>type</c> in a request's <c>tools</c>.</summary>
    public const string ToolType = "memory_20250818";

    public string Name => ToolName;

    public string Description => "Claude's memory tool (memory_20250818)";

    // Never sent: the request carries the typed tool (Definition). Validation of the input is the commands' own.
    public ToolSchema InputSchema { get; } = new() { Type = "object" };

    /// <summary>The tool as a request's <c>tools</c> carries it.</summary>
    public static JsonObject Definition() => new() { ["type"] = ToolType, ["name"] = ToolName };

    public async Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var transaction = context.Transaction ?? throw new InvalidOperationException("The memory tool runs in the tool worker's transaction.");
        var (memory, metadataValue) = await sql.ScopeAsync(transaction, context.AgentId, context.SessionId, cancellationToken).ConfigureAwait(false);
        if (memory is null)
        {
            // The agent's memory was turned off (or the agent deleted) after Claude called it.
            return ToolResult.Error("The memory tool is not available to this agent any more (its AgentDefinition.Memory is not set). Continue without memory.");
        }

        if (MemoryStoreId.Of(memory, context.AgentId, context.SessionId, metadataValue) is not { } store)
        {
            return ToolResult.Error(
                $"Memory is not available in this conversation: the agent keeps one memory per value of the session metadata key '{memory.MetadataKey}', " +
                "and this session has no value for it. Continue without memory.");
        }

        // The lock serialises every write of the store until this transaction commits with the tool_result.
        var storeId = await sql.LockAsync(transaction, store, cancellationToken).ConfigureAwait(false);
        var files = await sql.FilesAsync(transaction, storeId, cancellationToken).ConfigureAwait(false);
        var outcome = new MemoryCommands(files, memory).Execute(input);
        switch (outcome.Change)
        {
            case MemoryChange.Write write:
                await sql.WriteAsync(transaction, storeId, write.Path, write.Content, cancellationToken).ConfigureAwait(false);
                break;
            case MemoryChange.Delete delete:
                await sql.DeleteAsync(transaction, storeId, delete.Path, cancellationToken).ConfigureAwait(false);
                break;
            case MemoryChange.Rename rename:
                await sql.RenameAsync(transaction, storeId, rename.OldPath, rename.NewPath, cancellationToken).ConfigureAwait(false);
                break;
        }

        return outcome.IsError ? ToolResult.Error(outcome.Text) : ToolResult.FromText(outcome.Text);
    }
}
