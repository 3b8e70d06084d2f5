using System.Text.Json;

namespace AgentPg;

/// <summary>A tool Claude can call. Register it with <see cref="AgentPgClient.RegisterTool(ITool)"/>.</summary>
/// <remarks>
/// <para>The input comes from a model and is untrusted: AgentPg validates it against <see cref="InputSchema"/> before
/// calling <see cref="ExecuteAsync"/> (an invalid input is reported back to Claude and the tool is not called), but a
/// tool must still never build SQL, file paths or shell commands from it.</para>
/// <para>The returned string becomes the tool_result Claude sees. Throwing retries the tool per
/// <see cref="AgentPgOptions.ToolRetry"/> and then reports the error to Claude; <see cref="ToolCancelException"/>,
/// <see cref="ToolDiscardException"/> and <see cref="ToolSnoozeException"/> control that flow explicitly.</para>
/// <para>Implementations are called concurrently and on any instance that registered them.</para>
/// </remarks>
public interface ITool
{
    /// <summary>Gets the name Claude uses to call the tool; it must match <c>^[a-zA-Z0-9_-]{1,64}$</c>.</summary>
    string Name { get; }

    /// <summary>Gets the description Claude reads to decide when to call the tool.</summary>
    string Description { get; }

    /// <summary>Gets the JSON schema of the input (an object schema).</summary>
    ToolSchema InputSchema { get; }

    /// <summary>Gets whether Claude must write this tool's input to match <see cref="InputSchema"/> exactly (strict tool use:
    /// the definition is sent with <c>strict: true</c> and Claude samples the input under the schema). Default:
    /// <see langword="false"/>.</summary>
    /// <remarks>Claude supports a subset of JSON Schema in strict mode and refuses a request whose strict tool's schema uses
    /// more (every run of the agent then fails with the API's message): see Claude's strict tool use documentation. AgentPg
    /// validates every input against the schema either way.</remarks>
    bool Strict => false;

    /// <summary>Gets whether Claude streams this tool's input as it writes it instead of buffering each value to validate it
    /// first (fine-grained tool streaming: the definition is sent with <c>eager_input_streaming: true</c> in streaming
    /// requests; batch requests do not stream). Default: <see langword="false"/>.</summary>
    /// <remarks>Watchers of the run see the input grow sooner (<see cref="ToolInputDeltaEvent"/>), which suits large inputs
    /// such as a file's content. The input is then not validated by Claude while it streams: an input that ends up not being
    /// JSON is answered with an error tool_result and the tool is not called; one cut off by <c>max_tokens</c> is asked for
    /// again with more room, as without the option.</remarks>
    bool EagerInputStreaming => false;

    /// <summary>Executes the tool.</summary>
    /// <param name="context">The run, session, attempt and variables of this execution.</param>
    /// <param name="input">The input Claude provided, already validated against <see cref="InputSchema"/>.</param>
    /// <param name="cancellationToken">Fires when the run is cancelled, the attempt times out or the client stops.</param>
    /// <returns>The tool result text for Claude.</returns>
    Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken);
}
