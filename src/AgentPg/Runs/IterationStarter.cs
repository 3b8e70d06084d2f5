using System.Text.Json.Nodes;
using AgentPg.Claude;
using AgentPg.Internal;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg.Runs;

/// <summary>Starts an iteration: the first one of a claim was started by the claim itself, so only the agent, its delegates and
/// the conversation the request is built from are read; a later one (a continuation in place) is started in one fenced step
/// that writes the iteration and reads the same.</summary>
internal sealed class IterationStarter(Engine engine)
{
    public async Task<IterationContext> StartAsync(ClaimedRun claimed, bool streaming, CancellationToken cancellationToken)
    {
        var run = claimed.Run;
        if (claimed.IterationStarted && claimed.IterationId is { } startedId)
        {
            // The claim wrote the prompt and the iteration (agentpg_claim_runs): only the reads are left, in no transaction
            // of their own. Every later write is fenced on the claim and this iteration.
            claimed.IterationStarted = false;
            claimed.IterationUsage = Usage.Zero;
            claimed.IterationModel = null;
            claimed.IterationMaxTokens = null;
            claimed.CompactedForContextWindow = false;
            if (claimed.FirstIterationInputs is { } inputs)
            {
                // ... and the claim's batch read them too.
                claimed.FirstIterationInputs = null;
                return BuildContext(claimed, inputs.Agent, inputs.Delegates, inputs.History, claimed.Iteration, startedId, claimed.MaxTokensOverride,
                    claimed.Run.RunMode == RunMode.Streaming);
            }

            return await LoadAsync(claimed, claimed.Iteration, startedId, claimed.MaxTokensOverride, includeHistory: true, cancellationToken)
                .ConfigureAwait(false);
        }

        var number = claimed.Iteration + 1;
        var iterationId = Guid.CreateVersion7();
        var writePrompt = claimed.Iteration == 0 && !string.IsNullOrEmpty(run.Prompt);
        var promptId = Guid.CreateVersion7();
        var trigger = claimed.Trigger;

        return await Transient.RetryAsync(async ct =>
        {
            var sql = engine.Sql;
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                // A lost start (server crash) is detected by the next fenced write, which checks the current iteration.
                NotifySql.AddAsyncCommit(batch);
                MessageSql.AddIndexPlans(batch);
                sql.Runs.AddFence(batch, run, engine.InstanceId, null);
                if (writePrompt)
                {
                    sql.Messages.AddInsert(batch, promptId, run, MessageRole.User, "{}", MessageContent.Text(run.Prompt), once: false);
                }

                // max_tokens is only known with the agent; the iteration row gets it when the result is recorded.
                sql.Iterations.AddInsert(batch, iterationId, run, number, streaming, trigger, engine.InstanceId);
                sql.Runs.AddStartIteration(batch, run.Id, number, iterationId);
                sql.Agents.AddGetById(batch, run.AgentId);
                sql.Agents.AddGetDelegates(batch, run.AgentId);
                sql.Messages.AddContext(batch, run);

                var reader = await engine.ExecuteReaderAsync(batch, ct).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    await reader.NextResultAsync(ct).ConfigureAwait(false); // past the commit setting
                    await reader.NextResultAsync(ct).ConfigureAwait(false); // past the planner setting
                    await reader.NextResultAsync(ct).ConfigureAwait(false); // past the fence
                    var (agent, delegates) = await ReadAgentAsync(reader, run.AgentId, ct).ConfigureAwait(false);
                    await reader.NextResultAsync(ct).ConfigureAwait(false);
                    var history = await MessageSql.ReadMessagesAsync(reader, ct).ConfigureAwait(false);
                    claimed.Iteration = number;
                    claimed.IterationId = iterationId;
                    claimed.IterationUsage = Usage.Zero;
                    claimed.IterationModel = null;
                    claimed.IterationMaxTokens = null;
                    claimed.CompactedForContextWindow = false;
                    return BuildContext(claimed, agent, delegates, history, number, iterationId, claimed.MaxTokensOverride, streaming);
                }
            }
        }, engine.Time, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>The context of an iteration that was started earlier (a batch result arriving later, or a resubmission, which
    /// also needs the conversation).</summary>
    public async Task<IterationContext> LoadAsync(ClaimedRun claimed, int iterationNumber, Guid iterationId, int? maxTokens, bool includeHistory,
        CancellationToken cancellationToken)
    {
        var run = claimed.Run;
        return await Transient.RetryAsync(async ct =>
        {
            var batch = new NpgsqlBatch();
            await using (batch.ConfigureAwait(false))
            {
                MessageSql.AddIndexPlans(batch);
                engine.Sql.Agents.AddGetById(batch, run.AgentId);
                engine.Sql.Agents.AddGetDelegates(batch, run.AgentId);
                if (includeHistory)
                {
                    engine.Sql.Messages.AddContext(batch, run);
                }

                var reader = await engine.ExecuteReaderAsync(batch, ct).ConfigureAwait(false);
                await using (reader.ConfigureAwait(false))
                {
                    await reader.NextResultAsync(ct).ConfigureAwait(false); // past the planner setting
                    var (agent, delegates) = await ReadAgentAsync(reader, run.AgentId, ct).ConfigureAwait(false);
                    IReadOnlyList<Message> history = [];
                    if (includeHistory)
                    {
                        await reader.NextResultAsync(ct).ConfigureAwait(false);
                        history = await MessageSql.ReadMessagesAsync(reader, ct).ConfigureAwait(false);
                    }

                    return BuildContext(claimed, agent, delegates, history, iterationNumber, iterationId, maxTokens, claimed.Run.RunMode == RunMode.Streaming);
                }
            }
        }, engine.Time, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Reads the results of <see cref="AgentSql.AddGetById"/> and <see cref="AgentSql.AddGetDelegates"/>: the agent (a run
    /// whose agent was deleted fails) and its delegates.</summary>
    private static async Task<(AgentDefinition Agent, List<(Guid Id, string Name, string? Description)> Delegates)> ReadAgentAsync(
        NpgsqlDataReader reader, Guid agentId, CancellationToken ct)
    {
        var agent = await reader.ReadAsync(ct).ConfigureAwait(false)
            ? AgentSql.Read(reader)
            : throw new RunFailureException(ErrorTypes.ProcessingError, $"Agent {agentId} of the run no longer exists.");
        await reader.NextResultAsync(ct).ConfigureAwait(false);
        var delegates = new List<(Guid Id, string Name, string? Description)>();
        while (await reader.ReadAsync(ct).ConfigureAwait(false))
        {
            delegates.Add(AgentSql.ReadDelegate(reader));
        }

        return (agent, delegates);
    }

    private IterationContext BuildContext(ClaimedRun claimed, AgentDefinition agent, List<(Guid Id, string Name, string? Description)> delegates,
        IReadOnlyList<Message> history, int number, Guid iterationId, int? maxTokens, bool streaming)
    {
        var offered = new SortedDictionary<string, ITool>(StringComparer.Ordinal);
        if (agent.Tools is null)
        {
            foreach (var (name, tool) in engine.Tools)
            {
                offered[name] = tool;
            }
        }
        else
        {
            foreach (var name in agent.Tools)
            {
                if (engine.Tools.TryGetValue(name, out var tool))
                {
                    offered[name] = tool;
                }
            }
        }

        var delegateTools = new Dictionary<string, Guid>(StringComparer.Ordinal);
        foreach (var d in delegates)
        {
            if (ToolNames.IsValid(d.Name) && !delegateTools.ContainsKey(d.Name))
            {
                // A delegate wins over an instance tool of the same name (only possible with Tools = null).
                offered.Remove(d.Name);
                delegateTools[d.Name] = d.Id;
            }
        }

        if (agent.Memory is not null)
        {
            // Claude's memory tool takes the name "memory" (an instance tool so named is not offered to this agent).
            offered.Remove(Memory.MemoryTool.ToolName);
        }

        // A server tool takes its name from an instance tool (Tools = null) and from a delegate renamed to it since the agent
        // was checked: Claude refuses two tools of one name, which would fail every call.
        var serverTools = agent.ServerTools ?? [];
        foreach (var serverTool in serverTools)
        {
            offered.Remove(serverTool.Name);
            delegateTools.Remove(serverTool.Name);
        }

        // With a tool search tool, the client tools and delegates are deferred (defer_loading: true) but for the ones it keeps
        // loaded: Claude sees their names only, and loads the definitions its searches find.
        var toolSearch = serverTools.FirstOrDefault(t => t.IsToolSearch);
        var toolsJson = new JsonArray();
        foreach (var tool in offered.Values)
        {
            toolsJson.Add(Deferred(RequestBuilder.ToolDefinition(tool, streaming), toolSearch));
        }

        foreach (var d in delegates.Where(d => delegateTools.TryGetValue(d.Name, out var id) && id == d.Id))
        {
            toolsJson.Add(Deferred(RequestBuilder.ToolDefinition(d.Name, d.Description ?? "", Tools.DelegateTool.InputSchema()), toolSearch));
        }

        if (agent.Memory is not null && !delegateTools.ContainsKey(Memory.MemoryTool.ToolName)
            && !serverTools.Any(t => t.Name == Memory.MemoryTool.ToolName))
        {
            toolsJson.Add(Memory.MemoryTool.Definition());
        }

        foreach (var serverTool in serverTools)
        {
            toolsJson.Add(serverTool.ToDefinitionNode());
        }

        var limit = RequestBuilder.ModelMaxOutputTokens(agent.Model);
        var tokens = Math.Min(maxTokens ?? agent.MaxTokens ?? RequestBuilder.DefaultMaxTokens, Math.Max(limit, agent.MaxTokens ?? 0));
        var extended = engine.Options.ExtendedContext || (agent.Config.TryGetValue("extended_context", out var value) && value is true);
        Diagnostics.Telemetry.AgentKnown(claimed.Activity, agent);
        var options = engine.Options;
        var cacheTtl = options.PromptCaching == PromptCacheMode.Off
            ? null
            : (options.PromptCacheTtl ?? (streaming ? TimeSpan.FromMinutes(5) : TimeSpan.FromHours(1))) == TimeSpan.FromHours(1) ? "1h" : "5m";
        return new IterationContext(agent, history, offered, delegateTools, toolsJson, tokens,
            RequestBuilder.SystemPrompt(agent, claimed.Run.OverrideInstructions, claimed.Run.AppendInstructions), number, iterationId, extended,
            cacheTtl, RequestBuilder.ContextManagement(agent), claimed.Run.OutputSchema ?? agent.OutputSchema);
    }

    private static JsonObject Deferred(JsonObject definition, ServerTool? toolSearch)
    {
        if (toolSearch is not null && !toolSearch.AlwaysLoadedTools.Contains((string)definition["name"]!, StringComparer.Ordinal))
        {
            definition["defer_loading"] = true;
        }

        return definition;
    }
}
