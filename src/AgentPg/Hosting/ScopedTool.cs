using System.Text.Json;
using Microsoft.Extensions.DependencyInjection;

namespace AgentPg.Hosting;

/// <summary>A tool registered with <c>AddTool&lt;TTool&gt;()</c>: each execution resolves the tool in a scope of its own.</summary>
/// <remarks>It is an <see cref="IContentTool"/> so that a scoped <see cref="IContentTool"/> keeps its content blocks; a
/// text tool's result passes through as text.</remarks>
internal class ScopedTool<TTool>(IServiceScopeFactory scopes, string name, string description, ToolSchema inputSchema) : IContentTool
    where TTool : class, ITool
{
    public string Name { get; } = name;

    public string Description { get; } = description;

    public ToolSchema InputSchema { get; } = inputSchema;

    public Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
        => InScopeAsync(context, tool => tool.ExecuteAsync(context, input, cancellationToken));

    public Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
        => InScopeAsync(context, async tool => tool is IContentTool contentTool
            ? await contentTool.ExecuteContentAsync(context, input, cancellationToken).ConfigureAwait(false)
            : ToolResult.FromText(await tool.ExecuteAsync(context, input, cancellationToken).ConfigureAwait(false) ?? ""));

    /// <summary>Resolves the tool in a scope of its own and runs <paramref name="execute"/> with the execution's scope end
    /// open: what the tool binds to the execution in its scoped services (a pooled DbContext bound with UseToolTransaction) is
    /// undone before the scope is disposed and the services are reused.</summary>
    private async Task<T> InScopeAsync<T>(ToolContext context, Func<TTool, Task<T>> execute)
    {
        var scope = scopes.CreateAsyncScope();
        await using (scope.ConfigureAwait(false))
        {
            var end = new ToolScopeEnd();
            context.ScopeEnd = end;
            try
            {
                return await execute(scope.ServiceProvider.GetRequiredService<TTool>()).ConfigureAwait(false);
            }
            finally
            {
                context.ScopeEnd = null;
                end.Run();
            }
        }
    }
}

/// <summary>A scoped <see cref="ITransactionalTool"/>: the worker sees the marker and runs it in its exactly-once transaction.</summary>
internal sealed class ScopedTransactionalTool<TTool>(IServiceScopeFactory scopes, string name, string description, ToolSchema inputSchema)
    : ScopedTool<TTool>(scopes, name, description, inputSchema), ITransactionalTool
    where TTool : class, ITool;

internal static class ScopedTool
{
    public static ITool Create<TTool>(IServiceProvider services)
        where TTool : class, ITool
    {
        var scopes = services.GetRequiredService<IServiceScopeFactory>();
        // An async scope: a tool or a scoped dependency that implements only IAsyncDisposable makes a synchronous Dispose
        // throw. This runs in the container's synchronous factory of the client; disposing the services of a scope that
        // was only used to read properties normally completes at once.
        var scope = scopes.CreateAsyncScope();
        try
        {
            // The metadata is read while the scope lives: the properties may depend on scoped services.
            var prototype = scope.ServiceProvider.GetRequiredService<TTool>();
            return typeof(ITransactionalTool).IsAssignableFrom(typeof(TTool))
                ? new ScopedTransactionalTool<TTool>(scopes, prototype.Name, prototype.Description, prototype.InputSchema)
                : new ScopedTool<TTool>(scopes, prototype.Name, prototype.Description, prototype.InputSchema);
        }
        finally
        {
            scope.DisposeAsync().AsTask().GetAwaiter().GetResult();
        }
    }
}
