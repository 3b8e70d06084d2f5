namespace AgentPg;

/// <summary>Per-run settings for the <c>Run*</c> and <c>RunFast*</c> methods.</summary>
public sealed class RunOptions
{
    /// <summary>Gets or sets values passed to every tool of the run (and of its child runs) through <see cref="ToolContext.Variables"/>.</summary>
    /// <remarks>Stored as JSON: a tool reads them back with <see cref="ToolContext.GetVariable{T}"/>.</remarks>
    public IReadOnlyDictionary<string, object?>? Variables { get; set; }

    /// <summary>Gets or sets instructions that replace the agent's system prompt for this run (not for child runs).</summary>
    public string? OverrideInstructions { get; set; }

    /// <summary>Gets or sets instructions appended to the agent's system prompt for this run (not for child runs).</summary>
    /// <remarks>Ignored when <see cref="OverrideInstructions"/> is set.</remarks>
    public string? AppendInstructions { get; set; }

    /// <summary>Gets or sets the JSON schema of this run's final answer (Claude's structured outputs), in place of the agent's
    /// <see cref="AgentDefinition.OutputSchema"/> (not for child runs, which follow their own agent's).</summary>
    /// <remarks>Stored with the run and sent on each of its model calls as <c>output_config.format</c>; read the answer with
    /// <see cref="Response.Deserialize{T}(System.Text.Json.JsonSerializerOptions?)"/>. Same rules as
    /// <see cref="AgentDefinition.OutputSchema"/>; <see cref="StructuredOutput.SchemaFor{T}(System.Text.Json.JsonSerializerOptions?)"/>
    /// builds one from a type.</remarks>
    public System.Text.Json.JsonElement? OutputSchema { get; set; }

    /// <summary>Gets or sets the most iterations (model calls) this run may make, 1 to 10 000, in place of the agent's
    /// <see cref="AgentDefinition.MaxIterations"/> (not for child runs, which follow their own agent's); <see langword="null"/>
    /// to keep the agent's.</summary>
    /// <remarks>Stored with the run. What counts and when it is checked: see <see cref="AgentDefinition.MaxIterations"/>; a run
    /// that reaches it fails with <c>error_type</c> <c>iteration_limit</c>.</remarks>
    public int? MaxIterations { get; set; }

    /// <summary>Gets or sets the most tokens this run and all the runs it delegates to may use together, in place of the agent's
    /// <see cref="AgentDefinition.TokenBudget"/>; <see langword="null"/> to keep the agent's.</summary>
    /// <remarks>Stored with the run, and with each child run its tree creates. What counts and when it is checked: see
    /// <see cref="AgentDefinition.TokenBudget"/>; a run that finds the budget used fails with <c>error_type</c>
    /// <c>token_budget_exceeded</c>. Must be positive.</remarks>
    public long? TokenBudget { get; set; }

    /// <summary>Gets or sets a callback fired when a tool of the run (or of its child runs) starts an attempt.</summary>
    /// <remarks>Fires on the instance that executes the tool, on a thread-pool thread; an exception it throws is logged
    /// and ignored. Callbacks live in memory of the instance that created the run.</remarks>
    public Action<ToolCallEvent>? OnToolStart { get; set; }

    /// <summary>Gets or sets a callback fired when a tool of the run (or of its child runs) finishes, with its result.</summary>
    /// <remarks>Same threading and error rules as <see cref="OnToolStart"/>; not fired for intermediate retries or snoozes. At
    /// most once, like <see cref="AgentPgHooks.OnToolCall"/>: not fired when the connection drops just as the result commits.</remarks>
    public Action<ToolCallEvent>? OnToolComplete { get; set; }

    /// <summary>Gets or sets a key that makes creating the run idempotent within its session.</summary>
    /// <remarks>Creating a run with a key already used in the session returns the first run's id instead of a new run,
    /// or throws <see cref="AgentPgException"/> with <see cref="AgentPgErrorCode.IdempotencyConflict"/> when the request
    /// differs: another agent, prompt, mode (<c>RunAsync</c> or <c>RunFastAsync</c>), <see cref="Variables"/>,
    /// <see cref="OverrideInstructions"/>, <see cref="AppendInstructions"/>, <see cref="OutputSchema"/>, <see cref="MaxIterations"/> or
    /// <see cref="TokenBudget"/> (the callbacks and the
    /// <see cref="ConcurrencyPolicy"/> are not compared). 1 to 255 characters.</remarks>
    public string? IdempotencyKey { get; set; }

    /// <summary>Gets or sets what happens when the session already has an active root run.</summary>
    /// <value>The default value is <see cref="AgentPg.ConcurrencyPolicy.Queue"/>.</value>
    public ConcurrencyPolicy ConcurrencyPolicy { get; set; } = ConcurrencyPolicy.Queue;
}
