namespace AgentPg;

/// <summary>An agent: a model, instructions, tools and delegates, stored in the database and shared by every instance.</summary>
/// <remarks>
/// An agent listed in another agent's <see cref="AgentIds"/> is offered to Claude as a tool named after it, so such
/// names must match Claude's tool-name rule (<c>^[a-zA-Z0-9_-]{1,64}$</c>); this is checked when agents are created
/// or updated.
/// </remarks>
public sealed record AgentDefinition
{
    /// <summary>Gets the id, assigned by the database on creation.</summary>
    public Guid Id { get; init; }

    /// <summary>Gets the name (1 to 255 characters). Names are unique per <see cref="Metadata"/> value.</summary>
    public required string Name { get; init; }

    /// <summary>Gets the description; for a delegate agent it is the tool description Claude sees.</summary>
    public string? Description { get; init; }

    /// <summary>Gets the Claude model, for example <c>claude-sonnet-4-5</c>.</summary>
    public required string Model { get; init; }

    /// <summary>Gets the system prompt.</summary>
    public string? SystemPrompt { get; init; }

    /// <summary>Gets the tools the agent may use: <see langword="null"/> = every tool of the instance that runs it, empty = none.</summary>
    /// <remarks>A run of an agent with a tool list is only claimed by instances that registered all of these tools.</remarks>
    public IReadOnlyList<string>? Tools { get; init; }

    /// <summary>Gets the agents this agent may delegate to; each is offered as a tool named after the agent.</summary>
    public IReadOnlyList<Guid> AgentIds { get; init; } = [];

    /// <summary>Gets the tools and delegate agents whose calls wait for a person's decision: tool names, delegate agent names,
    /// or <c>"*"</c> for every call; <see langword="null"/> or empty = none.</summary>
    /// <remarks>Such a call is stored as <see cref="ToolExecutionState.AwaitingApproval"/> and runs only after
    /// <see cref="AgentPgClient.ApproveToolCallAsync(Guid, System.Text.Json.JsonElement?, string?, CancellationToken)"/>; a delegate
    /// agent's child run is created only then. Names must be in <see cref="Tools"/> (any valid tool name when
    /// <see cref="Tools"/> is <see langword="null"/>) or name a delegate in <see cref="AgentIds"/>; renaming that delegate
    /// (<see cref="AgentPgClient.UpdateAgentAsync"/>) renames the entry.</remarks>
    public IReadOnlyList<string>? ToolsRequiringApproval { get; init; }

    /// <summary>Gets the JSON schema the agent's final answers follow (Claude's structured outputs), or <see langword="null"/> for
    /// free text.</summary>
    /// <remarks>Sent on every model call of the agent's runs as <c>output_config.format</c> (<c>{"type": "json_schema", "schema": …}</c>):
    /// Claude may still call tools, and its answer that ends the turn is JSON that follows the schema. A run's
    /// <see cref="RunOptions.OutputSchema"/> takes its place for that run; a delegate agent with a schema answers its caller in
    /// JSON. Read the answer with <see cref="Response.Deserialize{T}(System.Text.Json.JsonSerializerOptions?)"/>. The schema must
    /// be a JSON object; Claude supports a subset of JSON Schema (every object with <c>"additionalProperties": false</c>, no
    /// recursive definitions…) and refuses the request with a 400 naming what it does not support — build one from a type with
    /// <see cref="StructuredOutput.SchemaFor{T}(System.Text.Json.JsonSerializerOptions?)"/>.</remarks>
    public System.Text.Json.JsonElement? OutputSchema { get; init; }

    /// <summary>Gets Claude's memory tool for the agent, or <see langword="null"/> for none: which store its notes live in (per
    /// agent, per session, or per session metadata value such as a tenant id) and how large they may grow.</summary>
    /// <remarks>An agent with a memory is offered Claude's memory tool (<c>memory_20250818</c>, called <c>memory</c>), whose
    /// commands AgentPg executes itself against PostgreSQL, each in one transaction with its tool_result; no tool is registered
    /// and any instance runs them. <see cref="Tools"/> must not list <c>memory</c> then (the memory tool takes that name; with
    /// <see cref="Tools"/> <see langword="null"/> it takes the place of an instance tool so named). <see cref="ToolsRequiringApproval"/>
    /// may name <c>memory</c>. See docs/memory.md.</remarks>
    public AgentMemory? Memory { get; init; }

    /// <summary>Gets Claude's server tools for the agent — web search, web fetch, code execution, tool search — or
    /// <see langword="null"/> (or empty) for none.</summary>
    /// <remarks>For example <c>[ServerTool.WebSearch(maxUses: 5)]</c>. Claude runs these tools itself; AgentPg sends their
    /// definitions after the client tools on every model call of the agent's runs (with the <c>anthropic-beta</c> a tool needs),
    /// and stores and sends back the <c>server_tool_use</c> and result blocks exactly as Claude sent them. Names must be unique
    /// and must not be the name of a tool in <see cref="Tools"/>, of a delegate agent, or <c>memory</c> when the agent has a
    /// <see cref="Memory"/>: creating or updating such an agent throws <see cref="ArgumentException"/> (with <see cref="Tools"/>
    /// <see langword="null"/>, a server tool takes the place of an instance tool of the same name). At most one tool search
    /// tool (<see cref="ServerTool.ToolSearch"/>); with one, the agent's client tools and delegate agents are sent with
    /// <c>defer_loading: true</c> except its <see cref="ServerTool.AlwaysLoadedTools"/>. Server tool calls need no
    /// registration and no approval (<see cref="ToolsRequiringApproval"/> cannot name them: Claude runs them). See
    /// docs/tools.md, "Server tools".</remarks>
    public IReadOnlyList<ServerTool>? ServerTools { get; init; }

    /// <summary>Gets the maximum number of tokens per answer; <see langword="null"/> means 4096.</summary>
    public int? MaxTokens { get; init; }

    /// <summary>Gets the sampling temperature (0 to 1), or <see langword="null"/> for the model's default.</summary>
    /// <remarks>Claude Opus 4.1, Sonnet 4.5, Haiku 4.5 and later models take <see cref="Temperature"/> or <see cref="TopP"/>,
    /// not both: with both set, every model call of such an agent fails with Claude's 400 "`temperature` and `top_p` cannot
    /// both be specified for this model".</remarks>
    public double? Temperature { get; init; }

    /// <summary>Gets the top-k sampling parameter, or <see langword="null"/> for the model's default.</summary>
    public int? TopK { get; init; }

    /// <summary>Gets the top-p sampling parameter (0 to 1), or <see langword="null"/> for the model's default.</summary>
    /// <remarks>Not together with <see cref="Temperature"/> on Claude Opus 4.1, Sonnet 4.5, Haiku 4.5 and later models.</remarks>
    public double? TopP { get; init; }

    /// <summary>Gets whether and how Claude thinks before it answers (Claude's <c>thinking</c>), or <see langword="null"/> to
    /// send nothing (the model's default, no thinking).</summary>
    /// <remarks>For example <see cref="AgentThinking.Adaptive"/> (Claude Opus 4.6, Sonnet 4.6 and later) or
    /// <see cref="AgentThinking.Enabled(int)"/> with a budget of at least 1024 tokens and less than <see cref="MaxTokens"/>.
    /// Thinking is not compatible with a <see cref="Temperature"/> other than 1, with <see cref="TopK"/>, or with a
    /// <see cref="TopP"/> below 0.95: creating or updating such an agent throws <see cref="ArgumentException"/>. Streamed
    /// thinking arrives as <see cref="ThinkingDeltaEvent"/>; the thinking blocks are stored with the answer.</remarks>
    public AgentThinking? Thinking { get; init; }

    /// <summary>Gets how many tokens Claude may spend on an answer (Claude's <c>output_config.effort</c>), or
    /// <see langword="null"/> for the model's default (<see cref="AgentEffort.High"/>).</summary>
    /// <remarks>With <see cref="AgentThinking.Adaptive"/> it also steers how much Claude thinks.</remarks>
    public AgentEffort? Effort { get; init; }

    /// <summary>Gets the most iterations (model calls) a run of this agent may make, 1 to 10 000, or <see langword="null"/> for no
    /// limit.</summary>
    /// <remarks>Every iteration of the run counts: the first call, each call after a round of tool results, each continuation
    /// (<c>pause_turn</c>, a tool call cut off at <c>max_tokens</c>) and an iteration repeated after a rescue (its first call was
    /// made); a call retried within an iteration (a stream that failed, a prompt compacted to fit) does not. The count is the
    /// run's <see cref="Run.CurrentIteration"/>, read from the database, so it holds across crashes, rescues and instances.
    /// Checked before each iteration's model call: a run whose next call would be number <c>MaxIterations + 1</c> fails with
    /// <c>error_type</c> <c>iteration_limit</c> instead, after the tool results of its last round are stored (the conversation
    /// stays valid). <see cref="RunOptions.MaxIterations"/> takes its place for one root run. Read when the run makes its next
    /// call, like the agent's other fields.</remarks>
    public int? MaxIterations { get; init; }

    /// <summary>Gets the most tokens a root run of this agent and all the runs it delegates to may use together, or
    /// <see langword="null"/> for no budget.</summary>
    /// <remarks>Counted as <see cref="Run.Usage"/> records them, all four counters: <see cref="Usage.InputTokens"/> +
    /// <see cref="Usage.OutputTokens"/> + <see cref="Usage.CacheCreationInputTokens"/> + <see cref="Usage.CacheReadInputTokens"/>
    /// (unlike <see cref="Usage.TotalTokens"/>, which leaves the cache out), summed over the root run and every child run of its
    /// tree. Checked before each model
    /// call of any run in the tree, from what is stored: a run whose tree has used the budget fails with <c>error_type</c>
    /// <c>token_budget_exceeded</c> instead of calling Claude, so a delegate that stops there fails its caller's tool call, and
    /// the caller's next call fails the same way. Calls already under way when the budget is reached finish, so a tree can end
    /// above its budget by those calls' usage. The compaction summariser's calls are not counted (they are recorded with the
    /// session's compaction events, not in a run's usage). Applies when the agent runs as a root run; a delegate agent's
    /// budget does not apply to its child runs, which count against their root's. <see cref="RunOptions.TokenBudget"/> takes
    /// its place for one root run.</remarks>
    public long? TokenBudget { get; init; }

    /// <summary>Gets free-form metadata, for example a tenant id; <see cref="AgentPgClient.GetAgentByNameAsync"/> filters on it.</summary>
    public IReadOnlyDictionary<string, object?> Metadata { get; init; } = EmptyDictionary.Instance;

    /// <summary>Gets free-form configuration; <c>extended_context: true</c> enables the 1M-token context window on "prompt is too long".</summary>
    public IReadOnlyDictionary<string, object?> Config { get; init; } = EmptyDictionary.Instance;

    /// <summary>Gets when the agent was created.</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Gets when the agent was last updated.</summary>
    public DateTimeOffset UpdatedAt { get; init; }
}
