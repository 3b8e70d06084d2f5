namespace AgentPg;

/// <summary>What AgentPg's traces record (<see cref="AgentPgOptions.Telemetry"/>; see docs/observability.md).</summary>
public sealed class TelemetryOptions
{
    /// <summary>Gets or sets whether spans carry message content: the request's messages and the answer on <c>chat</c> spans
    /// (<c>gen_ai.input.messages</c>, <c>gen_ai.output.messages</c>), tool arguments and results on <c>execute_tool</c> spans
    /// (<c>gen_ai.tool.call.arguments</c>, <c>gen_ai.tool.call.result</c>).</summary>
    /// <value>The default value is <see langword="false"/>: content can hold personal data, so it is opt-in.</value>
    public bool CaptureContent { get; set; }

    internal TelemetryOptions Clone() => (TelemetryOptions)MemberwiseClone();
}
