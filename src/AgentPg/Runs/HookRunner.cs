using AgentPg.Diagnostics;
using Microsoft.Extensions.Logging;

namespace AgentPg.Runs;

/// <summary>Calls <see cref="AgentPgHooks"/> so that a failing hook is logged and never breaks the engine.</summary>
internal sealed class HookRunner(AgentPgHooks? hooks, ILogger logger)
{
    public AgentPgHooks? Hooks => hooks;

    /// <summary>Gets whether <see cref="AgentPgHooks.OnBeforeMessage"/> is set: the request is serialized for it only then.</summary>
    public bool HasBeforeMessage => hooks?.OnBeforeMessage is not null;

    /// <summary>Gets whether <see cref="AgentPgHooks.OnAfterMessage"/> is set.</summary>
    public bool HasAfterMessage => hooks?.OnAfterMessage is not null;

    /// <summary>Gets whether <see cref="AgentPgHooks.OnApprovalRequested"/> is set: the requests are read for it only then.</summary>
    public bool HasApprovalRequested => hooks?.OnApprovalRequested is not null;

    public Task ApprovalRequestedAsync(ToolApprovalRequest request, CancellationToken cancellationToken)
        => InvokeAsync(hooks?.OnApprovalRequested, request, nameof(AgentPgHooks.OnApprovalRequested), cancellationToken);

    public Task BeforeMessageAsync(ModelCallContext context, CancellationToken cancellationToken)
        => InvokeAsync(hooks?.OnBeforeMessage, context, nameof(AgentPgHooks.OnBeforeMessage), cancellationToken);

    public Task AfterMessageAsync(ModelCallContext context, CancellationToken cancellationToken)
        => InvokeAsync(hooks?.OnAfterMessage, context, nameof(AgentPgHooks.OnAfterMessage), cancellationToken);

    /// <summary>Gets whether <see cref="AgentPgHooks.OnToolCall"/> is set: an agent tool's event is read back only then.</summary>
    public bool HasToolCall => hooks?.OnToolCall is not null;

    public Task ToolCallAsync(ToolCallEvent e, CancellationToken cancellationToken)
        => InvokeAsync(hooks?.OnToolCall, e, nameof(AgentPgHooks.OnToolCall), cancellationToken);

    public Task BeforeCompactionAsync(CompactionContext context, CancellationToken cancellationToken)
        => InvokeAsync(hooks?.OnBeforeCompaction, context, nameof(AgentPgHooks.OnBeforeCompaction), cancellationToken);

    public Task AfterCompactionAsync(CompactionResult result, CancellationToken cancellationToken)
        => InvokeAsync(hooks?.OnAfterCompaction, result, nameof(AgentPgHooks.OnAfterCompaction), cancellationToken);

    public Task BecameLeaderAsync(CancellationToken cancellationToken)
        => InvokeAsync(hooks?.OnBecameLeader is { } hook ? (_, ct) => hook(ct) : null, 0, nameof(AgentPgHooks.OnBecameLeader), cancellationToken);

    public Task LostLeadershipAsync(CancellationToken cancellationToken)
        => InvokeAsync(hooks?.OnLostLeadership is { } hook ? (_, ct) => hook(ct) : null, 0, nameof(AgentPgHooks.OnLostLeadership), cancellationToken);

    /// <summary>Reports a background error to <see cref="AgentPgHooks.OnError"/> without waiting for it.</summary>
    public void Error(Exception exception)
    {
        if (hooks?.OnError is { } hook)
        {
            _ = InvokeAsync((e, ct) => hook(e, ct), exception, nameof(AgentPgHooks.OnError), CancellationToken.None);
        }
    }

    private async Task InvokeAsync<T>(Func<T, CancellationToken, Task>? hook, T argument, string name, CancellationToken cancellationToken)
    {
        if (hook is null)
        {
            return;
        }

        try
        {
            await hook(argument, cancellationToken).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
        {
            Log.HookFailed(logger, ex, name);
        }
    }
}
