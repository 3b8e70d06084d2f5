namespace AgentPg;

/// <summary>Thrown by a tool to fail its execution now, without retrying.</summary>
/// <remarks>The message is reported to Claude as an error tool result.</remarks>
public sealed class ToolCancelException : Exception
{
    /// <summary>Creates the exception with the message "tool cancelled".</summary>
    public ToolCancelException()
        : base("tool cancelled")
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">Why the tool gives up; Claude sees "tool cancelled: {message}".</param>
    public ToolCancelException(string message)
        : base("tool cancelled: " + message)
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">Why the tool gives up; Claude sees "tool cancelled: {message}".</param>
    /// <param name="innerException">The cause.</param>
    public ToolCancelException(string message, Exception? innerException)
        : base("tool cancelled: " + message, innerException)
    {
    }
}
