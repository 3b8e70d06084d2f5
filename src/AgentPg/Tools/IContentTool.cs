using System.Text.Json;

namespace AgentPg;

/// <summary>A tool whose result is content blocks (text, images, documents) and may report an error to Claude.</summary>
/// <remarks>
/// <para>The worker calls <see cref="ExecuteContentAsync"/> instead of <see cref="ITool.ExecuteAsync"/>; everything
/// else (validation of the input, retries, <see cref="ToolCancelException"/>, <see cref="ToolDiscardException"/>,
/// <see cref="ToolSnoozeException"/>, <see cref="ITransactionalTool"/>) works as for any tool. See
/// <see cref="ToolResult"/> for what Claude receives.</para>
/// <para><see cref="ITool.ExecuteAsync"/> has a default implementation for callers that want text: the result's text,
/// or a <see cref="ToolDiscardException"/> with it for an error result.</para>
/// </remarks>
public interface IContentTool : ITool
{
    /// <summary>Executes the tool.</summary>
    /// <param name="context">The run, session, attempt and variables of this execution.</param>
    /// <param name="input">The input Claude provided, already validated against <see cref="ITool.InputSchema"/>.</param>
    /// <param name="cancellationToken">Fires when the run is cancelled, the attempt times out or the client stops.</param>
    /// <returns>The result for Claude.</returns>
    Task<ToolResult> ExecuteContentAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken);

    /// <inheritdoc/>
    async Task<string> ITool.ExecuteAsync(ToolContext context, JsonElement input, CancellationToken cancellationToken)
    {
        var result = await ExecuteContentAsync(context, input, cancellationToken).ConfigureAwait(false);
        var output = ToolOutput.From(result);
        return output.IsError ? throw new ToolDiscardException(output.Text) : output.Text;
    }
}
