namespace AgentPg.Cli;

/// <summary>Ctrl+C presses, delivered to whatever command is running: a chat run cancels its run on the first press and exits
/// on the second; every other command stops on the first.</summary>
internal sealed class CliInterrupts
{
    private readonly Lock _lock = new();
    private Func<bool>? _handler;

    /// <summary>Handles one press. Returns true when the press was handled (the process keeps running to unwind), false
    /// when nothing claimed it and the process should end.</summary>
    public bool Press()
    {
        Func<bool>? handler;
        lock (_lock)
        {
            handler = _handler;
        }

        return handler?.Invoke() ?? false;
    }

    /// <summary>Routes presses to <paramref name="handler"/> until the returned scope is disposed.</summary>
    public IDisposable Route(Func<bool> handler)
    {
        lock (_lock)
        {
            var previous = _handler;
            _handler = handler;
            return new Scope(this, previous);
        }
    }

    private sealed class Scope(CliInterrupts owner, Func<bool>? previous) : IDisposable
    {
        public void Dispose()
        {
            lock (owner._lock)
            {
                owner._handler = previous;
            }
        }
    }
}
