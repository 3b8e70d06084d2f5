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

    /// <summary>Executes the tool.</summary>
    /// <param name="context">The run, session, attempt and variables of this execution.</param>
    /// <param name="input">The input Claude provided, already validated against <see cref="InputSchema"/>.</param>
    /// <param name="cancellationToken">Fires when the run is cancelled, the attempt times out or the client stops.</param>
    /// <returns>The tool result text for Claude.</returns>
    Task<string> ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken);
}
