using System.Text.Json.Nodes;
using AgentPg.Claude;

namespace AgentPg.Runs;

/// <summary>A run this instance holds: the claim that fences every write, and the processing state of its iterations.</summary>
internal sealed class ClaimedRun
{
    /// <param name="run">The run as claimed.</param>
    /// <param name="previous">The outcome of the iteration before the next one.</param>
    /// <param name="iterationStarted">Whether the claim already started the next iteration (agentpg_claim_runs): the run's
    /// current iteration is then the new one, and <paramref name="previous"/> the one before it.</param>
    public ClaimedRun(Run run, PreviousIteration? previous, bool iterationStarted = false)
    {
        Run = run;
        Iteration = run.CurrentIteration;
        IterationId = run.CurrentIterationId;
        IterationStarted = iterationStarted;
        Continuations = run.ContinuationCount;
        (Trigger, MaxTokensOverride) = NextIteration.Decide(iterationStarted ? run.CurrentIteration - 1 : run.CurrentIteration, previous);

        // Once a conversation needed the 1M-token window it keeps needing it.
        UsedExtendedContext = previous?.ExtendedContext ?? false;
    }

    public Run Run { get; }

    /// <summary>The W3C trace context stored with the run (its creator's), continued by this claim's spans.</summary>
    public string? TraceParent { get; init; }

    /// <summary>This claim's <c>invoke_agent</c> span, when traced.</summary>
    public System.Diagnostics.Activity? Activity { get; set; }

    /// <summary>The number of the latest iteration started.</summary>
    public int Iteration { get; set; }

    public Guid? IterationId { get; set; }

    /// <summary>Whether <see cref="Iteration"/> was started by the claim and has not been loaded yet: the next
    /// <see cref="IterationStarter.StartAsync"/> only reads what the request needs.</summary>
    public bool IterationStarted { get; set; }

    /// <summary>What the claim's batch read for the iteration it started (the agent, its delegates, the conversation), used
    /// once by <see cref="IterationStarter.StartAsync"/>; null when not read.</summary>
    public IterationInputs? FirstIterationInputs { get; set; }

    public int Continuations { get; set; }

    /// <summary>The trigger of the next iteration.</summary>
    public string Trigger { get; set; }

    /// <summary>max_tokens for the next iteration when it differs from the agent's (a truncated tool call doubles it).</summary>
    public int? MaxTokensOverride { get; set; }

    public bool UsedExtendedContext { get; set; }

    /// <summary>Whether the current iteration already compacted the session because its prompt was too long.</summary>
    public bool CompactedForContextWindow { get; set; }

    /// <summary>Usage of the current iteration's model calls (retries included: they are paid for).</summary>
    public Usage IterationUsage { get; set; } = Usage.Zero;

    /// <summary>The model the current iteration's streamed requests named (null before the first is sent), stored with the
    /// iteration when it fails as when it completes, so its usage is priced at that model.</summary>
    public string? IterationModel { get; set; }

    /// <summary>The max_tokens of the current iteration's last streamed request (null before the first is sent), stored with the
    /// iteration when it fails as when it completes.</summary>
    public int? IterationMaxTokens { get; set; }
}

/// <summary>What an iteration's request is built from, as read from the database.</summary>
internal sealed record IterationInputs(AgentDefinition Agent, List<(Guid Id, string Name, string? Description)> Delegates, IReadOnlyList<Message> History);

/// <summary>The outcome of the iteration before the current claim.</summary>
internal sealed record PreviousIteration(string TriggerType, string? StopReason, string? ErrorType, int? MaxTokens, bool ExtendedContext);

/// <summary>Everything one iteration needs: the agent as it is now, the conversation, and the tools offered to Claude.</summary>
internal sealed record IterationContext(
    AgentDefinition Agent,
    IReadOnlyList<Message> History,
    SortedDictionary<string, ITool> Tools,
    Dictionary<string, Guid> Delegates,
    JsonArray ToolsJson,
    int MaxTokens,
    string? System,
    int IterationNumber,
    Guid IterationId,
    bool ExtendedContextAllowed,
    string? CacheTtl = null,
    System.Text.Json.JsonElement? ContextManagement = null,
    System.Text.Json.JsonElement? OutputSchema = null)
{
    public Dictionary<string, System.Text.Json.JsonElement> Body()
        => RequestBuilder.Body(Agent, MaxTokens, System, RequestBuilder.Messages(History), ToolsJson, CacheTtl, ContextManagement, OutputSchema);

    /// <summary>The anthropic-beta header of the request, if any.</summary>
    public IReadOnlyDictionary<string, System.Text.Json.JsonElement> Headers(bool extendedContext)
        => RequestBuilder.BetaHeaders(extendedContext, ContextManagement is not null, Agent.ServerTools);
}
