namespace AgentPg;

/// <summary>Actions run when the DI scope of one tool execution ends, before its services are disposed (see
/// <see cref="ToolContext.ScopeEnd"/>).</summary>
internal sealed class ToolScopeEnd
{
    private readonly List<Action> _actions = [];

    /// <summary>Adds an action; actions run in reverse order of registration.</summary>
    public void Register(Action action)
    {
        ArgumentNullException.ThrowIfNull(action);
        lock (_actions)
        {
            _actions.Add(action);
        }
    }

    /// <summary>Runs every action, each once, even when one throws; the first exception is rethrown afterwards.</summary>
    public void Run()
    {
        Action[] actions;
        lock (_actions)
        {
            actions = [.. _actions];
            _actions.Clear();
        }

        Exception? first = null;
        for (var i = actions.Length - 1; i >= 0; i--)
        {
            try
            {
                actions[i]();
            }
            catch (Exception e)
            {
                first ??= e;
            }
        }

        if (first is not null)
        {
            System.Runtime.ExceptionServices.ExceptionDispatchInfo.Throw(first);
        }
    }
}
