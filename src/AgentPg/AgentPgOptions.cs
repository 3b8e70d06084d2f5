using Microsoft.Extensions.Logging;

namespace AgentPg;

/// <summary>Configuration of an <see cref="AgentPgClient"/>.</summary>
/// <remarks>
/// Every property has a working default. The options are validated once, by <see cref="AgentPgClient.Create"/>,
/// which throws an <see cref="ArgumentException"/> naming each invalid property and how to fix it; the client then
/// works on its own copy (nested <see cref="RunRescue"/>, <see cref="ToolRetry"/> and <see cref="Hooks"/> objects
/// included), so changing this object afterwards has no effect.
/// Any positive interval is accepted: tests commonly use 50–200 ms.
/// </remarks>
public sealed class AgentPgOptions
{
    /// <summary>Gets or sets the Claude API key.</summary>
    /// <value>The default value is the <c>ANTHROPIC_API_KEY</c> environment variable.</value>
    /// <remarks>Only processing needs it: a client that is never started (a producer) works without a key.</remarks>
    public string? ApiKey { get; set; }

    /// <summary>Gets or sets the base URL of the Claude API, for example a proxy or <c>FakeClaudeServer.BaseUrl</c>.</summary>
    /// <value>The default value is <see langword="null"/>: the official SDK's default (<c>https://api.anthropic.com</c>).</value>
    public string? BaseUrl { get; set; }

    /// <summary>Gets or sets a human-readable name for this instance, stored in <c>agentpg_instances</c>.</summary>
    /// <value>The default value is the host name.</value>
    public string? InstanceName { get; set; }

    /// <summary>Gets or sets the unique id of this instance (1 to 127 characters).</summary>
    /// <value>The default value is <see langword="null"/>: every client gets a new GUID.</value>
    /// <remarks>Two live clients must never share an id: each would treat the other's work as its own.</remarks>
    public string? InstanceId { get; set; }

    /// <summary>Gets or sets the PostgreSQL schema that holds AgentPg's tables, functions and NOTIFY channels.</summary>
    /// <value>The default value is <c>public</c>.</value>
    /// <remarks>1 to 40 lowercase letters, digits or underscores, starting with a letter or an underscore. Outside
    /// <c>public</c> the schema name prefixes every NOTIFY channel, so schemas in one database never wake each other.</remarks>
    public string Schema { get; set; } = "public";

    /// <summary>Gets or sets whether <see cref="AgentPgClient.StartAsync"/> applies missing migrations instead of refusing to start.</summary>
    /// <value>The default value is <see langword="false"/>.</value>
    public bool MigrateOnStart { get; set; }

    /// <summary>Gets or sets whether the workers prepare the statements of their hot path (claims, iteration starts, results,
    /// tool executions) on the pooled connections they open.</summary>
    /// <value>The default value is <see langword="true"/>.</value>
    /// <remarks>A prepared statement is parsed and planned once per physical connection instead of once per execution, which
    /// roughly halves PostgreSQL's CPU time per run. Npgsql keeps prepared statements when a connection returns to the pool.
    /// Turn this off only when connections go through a pooler that cannot carry prepared statements (PgBouncer in
    /// transaction mode before version 1.21). Statements run on a caller's transaction are never prepared.</remarks>
    public bool PrepareStatements { get; set; } = true;

    /// <summary>Gets or sets how many <b>batch</b> runs (<see cref="AgentPgClient.RunAsync(Guid, Guid, string, RunOptions?, CancellationToken)"/>,
    /// Claude's Message Batches API) this instance claims and submits at the same time.</summary>
    /// <value>The default value is 10.</value>
    /// <remarks><b>This is the batch-run limit only</b>, despite its name (kept from the reference implementation). Streaming
    /// runs (<c>RunFastAsync</c>) are limited by <see cref="MaxConcurrentStreamingRuns"/>, tool executions by
    /// <see cref="MaxConcurrentTools"/>. It bounds the work of building a request and creating its message batch, not the
    /// batches waiting at Claude: a submitted run holds no slot while it waits, so any number of batches can be in progress
    /// at once (each polled every <see cref="BatchPollInterval"/>).</remarks>
    public int MaxConcurrentRuns { get; set; } = 10;

    /// <summary>Gets or sets how many streaming runs (<c>RunFastAsync</c>) this instance processes at the same time.</summary>
    /// <value>The default value is 5.</value>
    /// <remarks>Batch runs have their own limit, <see cref="MaxConcurrentRuns"/>.</remarks>
    public int MaxConcurrentStreamingRuns { get; set; } = 5;

    /// <summary>Gets or sets how many tool executions this instance runs at the same time.</summary>
    /// <value>The default value is 50.</value>
    public int MaxConcurrentTools { get; set; } = 50;

    /// <summary>Gets or sets how often the run workers look for work when no notification woke them, and how often a client
    /// re-reads the runs its <c>WaitForRunAsync</c> callers wait on (one statement for all of them) in case a notification was
    /// lost.</summary>
    /// <value>The default value is 1 second. From 1 ms to 49.7 days (the range .NET timers accept).</value>
    public TimeSpan RunPollInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Gets or sets how often the tool worker looks for work when no notification woke it (retries and snoozes are found this way).</summary>
    /// <value>The default value is 500 milliseconds. From 1 ms to 49.7 days.</value>
    public TimeSpan ToolPollInterval { get; set; } = TimeSpan.FromMilliseconds(500);

    /// <summary>Gets or sets how often in-progress message batches are polled.</summary>
    /// <value>The default value is 30 seconds. From 1 ms to 49.7 days.</value>
    /// <remarks>Each poll of a batch is a request to Claude's Message Batches API, which has its own rate limits; a batch
    /// run's result is collected within about one interval after its batch ended.</remarks>
    public TimeSpan BatchPollInterval { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets how often this instance records that it is alive.</summary>
    /// <value>The default value is 15 seconds. From 1 ms to 49.7 days, and shorter than <see cref="InstanceTtl"/>.</value>
    public TimeSpan HeartbeatInterval { get; set; } = TimeSpan.FromSeconds(15);

    /// <summary>Gets or sets the length of the leader lease; the leader refreshes it every half of it.</summary>
    /// <value>The default value is 30 seconds. From 100 ms to 49.7 days, and not longer than <see cref="InstanceTtl"/> (the
    /// leader rescues dead instances' work, so a dead leader's work waits for its lease).</value>
    public TimeSpan LeaderTtl { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Gets or sets how long an instance may go without a heartbeat before its work is rescued.</summary>
    /// <value>The default value is 2 minutes. Up to 49.7 days, and longer than <see cref="HeartbeatInterval"/>.</value>
    public TimeSpan InstanceTtl { get; set; } = TimeSpan.FromMinutes(2);

    /// <summary>Gets or sets how often the leader removes instances that stopped heartbeating.</summary>
    /// <value>The default value is 1 minute. From 1 ms to 49.7 days.</value>
    public TimeSpan CleanupInterval { get; set; } = TimeSpan.FromMinutes(1);

    /// <summary>Gets or sets how long the live events of a run (<see cref="AgentPgClient.WatchRunAsync"/>) can be replayed after its
    /// root run finished; the leader deletes them afterwards. Messages and runs are kept forever.</summary>
    /// <value>The default value is 24 hours. Positive, at most 36 500 days (100 years).</value>
    /// <remarks>Watching a run whose events were deleted replays what the stored messages, tool calls and states still show,
    /// with new sequences, which are then kept this long from that first watch.</remarks>
    public TimeSpan RunEventRetention { get; set; } = TimeSpan.FromHours(24);

    /// <summary>Gets or sets what AgentPg's traces record (message content is opt-in).</summary>
    public TelemetryOptions Telemetry { get; set; } = new();

    /// <summary>Gets or sets how runs of dead or stuck workers are rescued.</summary>
    public RunRescueOptions RunRescue { get; set; } = new();

    /// <summary>Gets or sets how failed tool executions are retried.</summary>
    public ToolRetryOptions ToolRetry { get; set; } = new();

    /// <summary>Gets or sets how long one tool attempt may run before it is cancelled and counted as a failure.</summary>
    /// <value>The default value is 5 minutes. From 1 ms to 49.7 days.</value>
    /// <remarks>The tool's cancellation token fires; a tool that ignores it runs on detached, and its result is not recorded
    /// (an <see cref="ITransactionalTool"/> keeps its connection and transaction until it ends, then they roll back). Agent
    /// tools (delegations) are not timed: their child run takes as long as it takes, and cancelling the parent run cancels it.</remarks>
    public TimeSpan ToolTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Gets or sets how many characters of a tool's output reach Claude: text (and text documents) beyond it are cut,
    /// with a last line that says how many characters were left out.</summary>
    /// <value>The default value is 100 000 characters (about 25 000 tokens). From 1 000 to 100 000 000, or
    /// <see langword="null"/> for no limit.</value>
    /// <remarks>
    /// <para>A tool result stays in the session's conversation and is sent again with every later request: one huge output
    /// (a log, a table dump) fills the context window, and a request over Claude's 32 MB limit fails, for this run and every
    /// later run of the session. The limit applies to what a tool returns or throws (text, <see cref="ToolResult"/> content,
    /// MCP results, error messages) and to what is stored: <see cref="ToolExecution.ToolOutput"/> holds the cut text. Images
    /// and documents are limited by bytes (<see cref="ToolResult"/>), not by this setting. An agent tool's answer is bounded
    /// by its own max_tokens and is not cut. A person's decision is held to it too, refused rather than cut: a rejection reason,
    /// or an edited input with its comment (<see cref="AgentPgClient.RejectToolCallAsync(Guid, string, CancellationToken)"/>,
    /// <see cref="AgentPgClient.ApproveToolCallAsync(Guid, System.Text.Json.JsonElement?, string?, CancellationToken)"/>).</para>
    /// <para>A tool that has more to say should page it (an offset in its input) rather than raise the limit.</para>
    /// </remarks>
    public int? MaxToolOutputLength { get; set; } = 100_000;

    /// <summary>Gets or sets how long a tool call may wait for a person's decision
    /// (<see cref="AgentDefinition.ToolsRequiringApproval"/>) before it is rejected with "approval timed out".</summary>
    /// <value>The default value is <see langword="null"/>: wait forever. Otherwise positive, at most 36 500 days (100 years).</value>
    /// <remarks>Enforced by the leader's maintenance every <see cref="CleanupInterval"/>, measured with the database clock from
    /// when the request was recorded; the leader's value applies.</remarks>
    public TimeSpan? ApprovalTimeout { get; set; }

    /// <summary>Gets or sets how deep agents may delegate to agents (a root run has depth 0).</summary>
    /// <value>The default value is 8.</value>
    public int MaxAgentDepth { get; set; } = 8;

    /// <summary>Gets or sets how many continuation iterations (after <c>pause_turn</c> or a truncated tool call) one run may make.</summary>
    /// <value>The default value is 3.</value>
    public int MaxContinuations { get; set; } = 3;

    /// <summary>Gets or sets how many times the run engine retries a model call that failed inside a streamed answer.</summary>
    /// <value>The default value is 2.</value>
    /// <remarks>When Claude says it is unavailable (HTTP 408, 409, 429, 5xx, or an <c>overloaded_error</c> inside the stream),
    /// <see cref="ModelUnavailableTimeout"/> decides how long the call goes on being retried; when that is zero, HTTP errors
    /// before the answer starts are retried by the Anthropic SDK itself.</remarks>
    public int MaxModelRetries { get; set; } = 2;

    /// <summary>Gets or sets how long a model call goes on being retried while Claude is unavailable before the run fails.</summary>
    /// <value>The default value is 5 minutes. <see cref="TimeSpan.Zero"/> waits for nothing (the run fails once the SDK's and
    /// <see cref="MaxModelRetries"/>' retries are spent, as before this option); <see cref="Timeout.InfiniteTimeSpan"/> waits
    /// for as long as it takes. Otherwise from 1 ms to 49.7 days.</value>
    /// <remarks>
    /// <para>Unavailable means Claude answered that it cannot serve the request now — rate limited (429), overloaded (529 or an
    /// <c>overloaded_error</c> inside the stream), failing (5xx, <c>api_error</c>), timed out (408), in conflict (409) — or
    /// that the connection to it cannot be made at all. The run's worker then waits (1 second, doubling to 1 minute,
    /// jittered, and at most a quarter of <see cref="RunRescueOptions.Timeout"/>) and calls again, until this long has
    /// passed since the call first failed. It retries error answers itself instead of the Anthropic SDK: a server's
    /// <c>retry-after-ms</c> / <c>retry-after</c> is the least it waits (within the same cap), and <c>x-should-retry: false</c>
    /// fails the call at once. With <see cref="TimeSpan.Zero"/> the SDK retries them, as before this option.
    /// A Claude outage then delays runs instead of failing them. It applies to streamed answers and to creating a batch
    /// run's message batch.</para>
    /// <para>A waiting run keeps its slot (<see cref="MaxConcurrentStreamingRuns"/>, <see cref="MaxConcurrentRuns"/>), so an
    /// instance starts no more runs into a rate limit; it holds no connection or transaction; its worker records progress, so
    /// the rescue leaves it alone; a cancel of the run, or the shutdown's deadline (which releases it to another instance),
    /// ends the wait. Log event 2009 reports every wait. Refusals (400, 401, 403, 404…) are never retried.</para>
    /// </remarks>
    public TimeSpan ModelUnavailableTimeout { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Gets or sets whether a "prompt is too long" answer is retried once with Claude's 1M-token context window.</summary>
    /// <value>The default value is <see langword="false"/>. An agent can also opt in with <c>Config["extended_context"] = true</c>.</value>
    public bool ExtendedContext { get; set; }

    /// <summary>Gets or sets whether requests carry Claude prompt-cache breakpoints.</summary>
    /// <value>The default value is <see cref="PromptCacheMode.Automatic"/>.</value>
    /// <remarks>Automatic places at most three <c>cache_control</c> breakpoints: after the tools and system prompt, at the end
    /// of the previous request's conversation and at the end of this one, so every iteration of a tool loop and every new
    /// run of a session reads the prefix the previous request wrote (reads cost a tenth of input tokens, writes 1.25× for
    /// 5 minutes or 2× for 1 hour). A compaction changes the prefix: the request after it writes the cache again.</remarks>
    public PromptCacheMode PromptCaching { get; set; } = PromptCacheMode.Automatic;

    /// <summary>Gets or sets how long prompt-cache entries live: 5 minutes or 1 hour.</summary>
    /// <value>The default value is <see langword="null"/>: 5 minutes for streaming runs, 1 hour for batch runs (a batch result
    /// can take longer than 5 minutes to arrive, so the next iteration would miss a 5-minute entry).</value>
    public TimeSpan? PromptCacheTtl { get; set; }

    /// <summary>Gets or sets the price of each model, by the model name agents use (compared exactly, case included), for the
    /// cost of <see cref="AgentPgClient.GetUsageAsync"/>.</summary>
    /// <value>The default value is an empty dictionary: no model is priced, and the usage report has tokens without cost.</value>
    /// <remarks>AgentPg ships no prices: copy them from Claude's pricing page and update them when it changes (see
    /// <see cref="ModelPrice"/>). The client keeps a copy made when it is created.</remarks>
    public IDictionary<string, ModelPrice> ModelPrices { get; set; } = new Dictionary<string, ModelPrice>(StringComparer.Ordinal);

    /// <summary>Gets or sets whether sessions are compacted automatically: before an iteration's request when the conversation
    /// is over <see cref="CompactionOptions.Trigger"/>, and when Claude answers that the prompt is too long.</summary>
    /// <value>The default value is <see langword="false"/>.</value>
    public bool AutoCompaction { get; set; }

    /// <summary>Gets or sets how sessions are compacted, by <see cref="AutoCompaction"/> and by
    /// <see cref="AgentPgClient.CompactAsync(Guid, CancellationToken)"/>.</summary>
    public CompactionOptions Compaction { get; set; } = new();

    /// <summary>Gets or sets callbacks into the engine's life (model calls, tool calls, leadership, background errors).</summary>
    /// <value>The default value is <see langword="null"/>: no hooks.</value>
    public AgentPgHooks? Hooks { get; set; }

    /// <summary>Gets or sets the source of time for every timer, timestamp and backoff of the client.</summary>
    /// <value>The default value is <see cref="System.TimeProvider.System"/>.</value>
    public TimeProvider TimeProvider { get; set; } = TimeProvider.System;

    /// <summary>Gets or sets the logger factory.</summary>
    /// <value>The default value is <see langword="null"/>: nothing is logged.</value>
    public ILoggerFactory? LoggerFactory { get; set; }

    /// <summary>Checks every property and returns one message per invalid property.</summary>
    /// <returns>An empty list when the options are valid.</returns>
    public IReadOnlyList<string> Validate() => Internal.AgentPgOptionsValidator.Validate(this);

    internal AgentPgOptions Clone()
    {
        var copy = (AgentPgOptions)MemberwiseClone();
        copy.RunRescue = RunRescue?.Clone()!;
        copy.ToolRetry = ToolRetry?.Clone()!;
        copy.Telemetry = Telemetry?.Clone()!;
        copy.Hooks = Hooks?.Clone();
        copy.Compaction = Compaction?.Clone()!;
        copy.ModelPrices = ModelPrices is null ? null! : new Dictionary<string, ModelPrice>(ModelPrices, StringComparer.Ordinal);
        return copy;
    }
}
