namespace AgentPg;

/// <summary>Thrown by a tool whose input cannot be processed: fails the execution now, without retrying.</summary>
/// <remarks>The message is reported to Claude as an error tool result, so it can correct its input.</remarks>
public sealed class ToolDiscardException : Exception
{
    /// <summary>Creates the exception with the message "tool discarded".</summary>
    public ToolDiscardException()
        : base("tool discarded")
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong with the input; Claude sees "tool discarded: {message}".</param>
    public ToolDiscardException(string message)
        : base("tool discarded: " + message)
    {
    }

    /// <summary>Creates the exception.</summary>
    /// <param name="message">What is wrong with the input; Claude sees "tool discarded: {message}".</param>
    /// <param name="innerException">The cause.</param>
    public ToolDiscardException(string message, Exception? innerException)
        : base("tool discarded: " + message, innerException)
    {
    }
}
