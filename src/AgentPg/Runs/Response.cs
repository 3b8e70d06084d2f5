using System.Text.Json;

namespace AgentPg;

/// <summary>The result of a completed run.</summary>
public sealed record Response
{
    /// <summary>Gets the run.</summary>
    public Guid RunId { get; init; }

    /// <summary>Gets the text of the final answer: the text blocks of the run's last model call.</summary>
    /// <remarks>When Claude paused its turn (stop reason <c>pause_turn</c>, for example during a long web search) and the run
    /// continued it, the text written before the pause is in the run's earlier assistant messages in the session
    /// (<see cref="AgentPgClient.GetMessagesAsync(Guid, CancellationToken)"/>), not here.</remarks>
    public string Text { get; init; } = "";

    /// <summary>Gets the stop reason of the final answer (<c>end_turn</c>, <c>max_tokens</c>, <c>refusal</c> …).</summary>
    public string StopReason { get; init; } = "";

    /// <summary>Gets the usage of this run's own iterations.</summary>
    public Usage Usage { get; init; } = Usage.Zero;

    /// <summary>Gets the usage of this run plus every child run it delegated to, recursively.</summary>
    public Usage TotalUsage { get; init; } = Usage.Zero;

    /// <summary>Gets the final assistant message.</summary>
    public Message? Message { get; init; }

    /// <summary>Gets how many iterations (model calls) the run made.</summary>
    public int IterationCount { get; init; }

    /// <summary>Gets how many iterations asked for tools.</summary>
    public int ToolIterations { get; init; }

    /// <summary>Gets the run's tool calls in the order Claude made them.</summary>
    public IReadOnlyList<ToolCall> ToolCalls { get; init; } = [];

    /// <summary>Reads the final answer as JSON: the structured output of a run whose agent (or <see cref="RunOptions"/>) has an
    /// <see cref="AgentDefinition.OutputSchema"/>.</summary>
    /// <typeparam name="T">The type the schema describes (for example the one given to
    /// <see cref="StructuredOutput.SchemaFor{T}(JsonSerializerOptions?)"/>).</typeparam>
    /// <param name="options">How to read it; <see langword="null"/> for <see cref="JsonSerializerOptions.Web"/> (camelCase,
    /// case-insensitive), the default of <see cref="StructuredOutput.SchemaFor{T}(JsonSerializerOptions?)"/>.</param>
    /// <returns>The answer as <typeparamref name="T"/>.</returns>
    /// <exception cref="InvalidOperationException">Claude did not finish its answer (<see cref="StopReason"/> is
    /// <c>refusal</c>, <c>max_tokens</c> …, not <c>end_turn</c>): <see cref="Text"/> is not the structured output, or not all
    /// of it.</exception>
    /// <exception cref="JsonException"><see cref="Text"/> is not JSON that fits <typeparamref name="T"/> (the run had no
    /// output schema, or a different one).</exception>
    public T? Deserialize<T>(JsonSerializerOptions? options = null)
    {
        if (StopReason != Runs.StopReasons.EndTurn)
        {
            throw new InvalidOperationException(
                $"Run {RunId} did not end its answer (stop reason '{StopReason}'), so its text is not a whole structured output" +
                (StopReason == Runs.StopReasons.Refusal ? ": Claude refused to answer." :
                    StopReason == Runs.StopReasons.MaxTokens ? ": it was cut at the agent's MaxTokens; raise it." : ".") +
                " Check Response.StopReason before reading the answer as JSON.");
        }

        return JsonSerializer.Deserialize<T>(Text, options ?? JsonSerializerOptions.Web);
    }
}
