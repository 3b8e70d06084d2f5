namespace AgentPg;

/// <summary>A domain failure reported by AgentPg, identified by <see cref="Code"/>.</summary>
/// <remarks>
/// The message names the operation and the ids involved. Database errors that cause it are kept as the
/// <see cref="Exception.InnerException"/>.
/// </remarks>
public sealed class AgentPgException : Exception
{
    /// <summary>Creates an exception.</summary>
    /// <param name="code">What went wrong.</param>
    /// <param name="operation">The operation that failed, for example <c>CreateAgent</c>.</param>
    /// <param name="message">A message that says what happened and, where possible, how to fix it.</param>
    /// <param name="innerException">The underlying error, if any.</param>
    public AgentPgException(AgentPgErrorCode code, string operation, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Code = code;
        Operation = operation;
    }

    /// <summary>Gets what went wrong.</summary>
    public AgentPgErrorCode Code { get; }

    /// <summary>Gets the operation that failed, for example <c>CreateAgent</c> or <c>run</c>.</summary>
    public string Operation { get; }

    /// <summary>Gets the session involved, if any.</summary>
    public Guid? SessionId { get; init; }

    /// <summary>Gets the run involved, if any.</summary>
    public Guid? RunId { get; init; }

    /// <summary>Gets additional facts about the failure (for example <c>error_type</c> of a failed run).</summary>
    public IReadOnlyDictionary<string, object?> Context { get; init; } = new Dictionary<string, object?>();
}
