using AgentPg.Internal;
using AgentPg.Runs;
using AgentPg.Storage;
using Npgsql;

namespace AgentPg;

public sealed partial class AgentPgClient
{
    /// <summary>Creates an agent.</summary>
    /// <param name="definition">The agent; <see cref="AgentDefinition.Id"/> and the timestamps are ignored.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The stored agent, with its id and timestamps.</returns>
    /// <exception cref="ArgumentException">A field is invalid (the message names it), or a delegate's name cannot be a tool name.</exception>
    /// <exception cref="AgentPgException">An agent with the same name and metadata exists (<see cref="AgentPgErrorCode.AgentAlreadyExists"/>),
    /// or a delegate in <see cref="AgentDefinition.AgentIds"/> does not exist (<see cref="AgentPgErrorCode.AgentNotFound"/>).</exception>
    public async Task<AgentDefinition> CreateAgentAsync(AgentDefinition definition, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("CreateAgent", null, cancellationToken).ConfigureAwait(false);
        var (metadata, config) = ValidateDefinition(definition, nameof(definition));
        return await InAgentTransactionAsync(async transaction =>
        {
            await ValidateDelegatesAsync(definition, transaction, cancellationToken).ConfigureAwait(false);
            try
            {
                return (await _sql.Agents.InsertAsync(_dataSource, definition, metadata, config, ifAbsent: false, transaction, cancellationToken).ConfigureAwait(false))!;
            }
            catch (PostgresException ex) when (ex.IsUniqueViolation("agent_unique_name_metadata"))
            {
                throw AgentExists(definition, "CreateAgent", ex);
            }
        }, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Returns the agent with the definition's name and exactly its metadata, creating it when there is none.</summary>
    /// <param name="definition">The agent to find or create.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The existing agent, unchanged (use <see cref="UpdateAgentAsync"/> to change it), or the created one.</returns>
    /// <remarks>Safe to call on every application start and from concurrent instances: exactly one agent results.</remarks>
    /// <exception cref="ArgumentException">A field is invalid (the message names it).</exception>
    public async Task<AgentDefinition> GetOrCreateAgentAsync(AgentDefinition definition, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetOrCreateAgent", null, cancellationToken).ConfigureAwait(false);
        var (metadata, config) = ValidateDefinition(definition, nameof(definition));
        var existing = await _sql.Agents.GetByNameAndMetadataAsync(_dataSource, definition.Name, metadata, cancellationToken).ConfigureAwait(false);
        if (existing is not null)
        {
            return existing;
        }

        var created = await InAgentTransactionAsync(async transaction =>
        {
            await ValidateDelegatesAsync(definition, transaction, cancellationToken).ConfigureAwait(false);
            return await _sql.Agents.InsertAsync(_dataSource, definition, metadata, config, ifAbsent: true, transaction, cancellationToken).ConfigureAwait(false);
        }, cancellationToken).ConfigureAwait(false);
        if (created is not null)
        {
            return created;
        }

        // Another caller created it between the lookup and the insert.
        return (await _sql.Agents.GetByNameAndMetadataAsync(_dataSource, definition.Name, metadata, cancellationToken).ConfigureAwait(false))!;
    }

    /// <summary>Replaces every field of an existing agent.</summary>
    /// <param name="definition">The agent, identified by <see cref="AgentDefinition.Id"/>.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>A task that completes when the agent is updated.</returns>
    /// <remarks>Renaming an agent that other agents delegate to is checked against the tool-name rule and their other tools,
    /// and their <see cref="AgentDefinition.ToolsRequiringApproval"/> entries for the old name take the new one (a delegation
    /// that needed a person's approval still does). Runs already in progress keep using the previous definition until their
    /// next model call.</remarks>
    /// <exception cref="ArgumentException">The id is empty, a field is invalid, or <see cref="AgentDefinition.AgentIds"/> lists the
    /// agent itself.</exception>
    /// <exception cref="AgentPgException">The agent does not exist (<see cref="AgentPgErrorCode.AgentNotFound"/>), or another agent
    /// has the same name and metadata (<see cref="AgentPgErrorCode.AgentAlreadyExists"/>).</exception>
    public async Task UpdateAgentAsync(AgentDefinition definition, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("UpdateAgent", null, cancellationToken).ConfigureAwait(false);
        var (metadata, config) = ValidateDefinition(definition, nameof(definition));
        if (definition.Id == Guid.Empty)
        {
            throw new ArgumentException("AgentDefinition.Id is empty; pass the agent returned by CreateAgentAsync or GetAgentByIdAsync.", nameof(definition));
        }

        // A delegation to an agent already working up the chain is refused at run time (a cycle), so an agent listing itself
        // would offer Claude a tool that always fails.
        if (definition.AgentIds.Contains(definition.Id))
        {
            throw new ArgumentException(
                $"AgentDefinition.AgentIds of agent '{definition.Name}' lists the agent itself ({definition.Id}); an agent cannot delegate to itself " +
                "(the delegation would be refused as a cycle on every call). Remove it, or list another agent with the same definition.",
                nameof(definition));
        }

        var rows = await InAgentTransactionAsync(async transaction =>
        {
            // Delegates first, then the agent (then, renaming it, its delegators): the order every agent write locks in.
            await ValidateDelegatesAsync(definition, transaction, cancellationToken).ConfigureAwait(false);
            var currentName = await _sql.Agents.LockForUpdateAsync(_dataSource, definition.Id, transaction, cancellationToken).ConfigureAwait(false);
            await ValidateRenameAsync(definition, transaction, cancellationToken).ConfigureAwait(false);
            if (currentName is not null && currentName != definition.Name)
            {
                // The delegate tool Claude calls takes the new name: a delegator's approval for the old one would match no call.
                await _sql.Agents.FollowRenameAsync(_dataSource, definition.Id, currentName, definition.Name, transaction, cancellationToken).ConfigureAwait(false);
            }

            try
            {
                return await _sql.Agents.UpdateAsync(_dataSource, definition, metadata, config, transaction, cancellationToken).ConfigureAwait(false);
            }
            catch (PostgresException ex) when (ex.IsUniqueViolation("agent_unique_name_metadata"))
            {
                throw AgentExists(definition, "UpdateAgent", ex);
            }
        }, cancellationToken).ConfigureAwait(false);

        if (rows == 0)
        {
            throw AgentNotFound(definition.Id, "UpdateAgent");
        }
    }

    /// <summary>Deletes an agent that no run references.</summary>
    /// <param name="id">The agent.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>A task that completes when the agent is deleted.</returns>
    /// <exception cref="AgentPgException">The agent does not exist (<see cref="AgentPgErrorCode.AgentNotFound"/>), or runs or tool
    /// executions reference it (<see cref="AgentPgErrorCode.AgentInUse"/>; delete their sessions first), or other agents list it
    /// in their <see cref="AgentDefinition.AgentIds"/> (<see cref="AgentPgErrorCode.AgentInUse"/>; remove it from them first).</exception>
    public async Task DeleteAgentAsync(Guid id, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("DeleteAgent", null, cancellationToken).ConfigureAwait(false);
        try
        {
            await InAgentTransactionAsync(async transaction =>
            {
                // agent_ids has no foreign key: deleting a delegate would leave its delegators pointing at nothing. The lock
                // makes a concurrent write listing the agent either finish first (and be seen here) or wait and fail.
                if (!await _sql.Agents.LockForDeleteAsync(_dataSource, id, transaction, cancellationToken).ConfigureAwait(false))
                {
                    throw AgentNotFound(id, "DeleteAgent");
                }

                var delegators = await _sql.Agents.GetDelegatorsAsync(_dataSource, id, transaction, cancellationToken).ConfigureAwait(false);
                if (delegators.Count > 0)
                {
                    throw new AgentPgException(AgentPgErrorCode.AgentInUse, "DeleteAgent",
                        $"Agent {id} cannot be deleted: {string.Join(", ", delegators.Select(d => $"agent '{d.Name}'"))} delegate{(delegators.Count == 1 ? "s" : "")} " +
                        "to it. Remove it from their AgentIds (UpdateAgentAsync) first, or keep the agent.")
                    {
                        Context = new Dictionary<string, object?> { ["agent_id"] = id, ["delegators"] = delegators.Select(d => d.Id).ToList() },
                    };
                }

                return await _sql.Agents.DeleteAsync(_dataSource, id, transaction, cancellationToken).ConfigureAwait(false);
            }, cancellationToken).ConfigureAwait(false);
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.ForeignKeyViolation)
        {
            var (runs, executions) = await _sql.Agents.CountReferencesAsync(_dataSource, id, cancellationToken).ConfigureAwait(false);
            throw new AgentPgException(AgentPgErrorCode.AgentInUse, "DeleteAgent",
                $"Agent {id} cannot be deleted: {runs} runs and {executions} tool executions reference it. " +
                "Delete the sessions that hold them first (DeleteSessionAsync), or keep the agent.", ex)
            {
                Context = new Dictionary<string, object?> { ["agent_id"] = id, ["runs"] = runs, ["tool_executions"] = executions },
            };
        }
    }

    /// <summary>Gets an agent by id.</summary>
    /// <param name="id">The agent.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The agent.</returns>
    /// <exception cref="AgentPgException">No agent has that id (<see cref="AgentPgErrorCode.AgentNotFound"/>).</exception>
    public async Task<AgentDefinition> GetAgentByIdAsync(Guid id, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetAgentById", null, cancellationToken).ConfigureAwait(false);
        return await _sql.Agents.GetByIdAsync(_dataSource, id, cancellationToken).ConfigureAwait(false) ?? throw AgentNotFound(id, "GetAgentById");
    }

    /// <summary>Gets an agent by name whose metadata contains <paramref name="metadata"/>.</summary>
    /// <param name="name">The agent name.</param>
    /// <param name="metadata">Key/values the agent's metadata must contain (for example a tenant id); <see langword="null"/> matches any.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The matching agent; the oldest one when several match.</returns>
    /// <exception cref="AgentPgException">No agent matches (<see cref="AgentPgErrorCode.AgentNotFound"/>).</exception>
    public async Task<AgentDefinition> GetAgentByNameAsync(string name, IReadOnlyDictionary<string, object?>? metadata = null, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("GetAgentByName", null, cancellationToken).ConfigureAwait(false);
        ArgumentNullException.ThrowIfNull(name);
        Nul.Reject(name, nameof(name), "The agent name");
        var filter = JsonMapping.ToJsonObject(metadata, nameof(metadata));
        if (await _sql.Agents.GetByNameAsync(_dataSource, name, filter, cancellationToken).ConfigureAwait(false) is { } agent)
        {
            return agent;
        }

        // Names are case-sensitive: a near miss ("Researcher" for "researcher") is the usual cause, so say which names are close.
        var (candidates, _) = await _sql.Agents.ListAsync(_dataSource, filter, 1000, 0, cancellationToken).ConfigureAwait(false);
        var similar = AgentNames.Similar(name, candidates.Select(a => a.Name));
        var hint = similar.Count == 0 ? "" : $" Did you mean {string.Join(" or ", similar.Select(n => $"'{n}'"))}?"
            + (similar.Any(n => string.Equals(n, name, StringComparison.OrdinalIgnoreCase)) ? " Agent names are case-sensitive." : "");
        throw new AgentPgException(AgentPgErrorCode.AgentNotFound, "GetAgentByName",
            (metadata is { Count: > 0 } ? $"No agent named '{name}' has metadata containing {filter}." : $"No agent is named '{name}'.") + hint)
        {
            Context = new Dictionary<string, object?> { ["name"] = name },
        };
    }

    /// <summary>Lists agents ordered by name.</summary>
    /// <param name="metadata">Key/values the agents' metadata must contain; <see langword="null"/> lists all.</param>
    /// <param name="limit">The page size, 1 to 1000.</param>
    /// <param name="offset">How many matching agents to skip.</param>
    /// <param name="cancellationToken">Cancels the operation.</param>
    /// <returns>The page and the total number of matching agents.</returns>
    public async Task<AgentList> ListAgentsAsync(IReadOnlyDictionary<string, object?>? metadata = null, int limit = 100, int offset = 0, CancellationToken cancellationToken = default)
    {
        await _schemaCheck.EnsureAsync("ListAgents", null, cancellationToken).ConfigureAwait(false);
        ArgumentOutOfRangeException.ThrowIfLessThan(limit, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(limit, 1000);
        ArgumentOutOfRangeException.ThrowIfNegative(offset);
        var filter = JsonMapping.ToJsonObject(metadata, nameof(metadata));
        var (agents, total) = await _sql.Agents.ListAsync(_dataSource, filter, limit, offset, cancellationToken).ConfigureAwait(false);
        return new AgentList(agents, total);
    }

    internal static (string Metadata, string Config) ValidateDefinition(AgentDefinition definition, string parameterName)
    {
        ArgumentNullException.ThrowIfNull(definition, parameterName);
        if (string.IsNullOrWhiteSpace(definition.Name))
        {
            throw new ArgumentException("AgentDefinition.Name is required (1 to 255 characters).", parameterName);
        }

        if (definition.Name.Length > 255)
        {
            throw new ArgumentException($"AgentDefinition.Name is {definition.Name.Length} characters long; the maximum is 255.", parameterName);
        }

        if (string.IsNullOrWhiteSpace(definition.Model))
        {
            throw new ArgumentException($"AgentDefinition.Model is required for agent '{definition.Name}', for example \"claude-sonnet-4-5\".", parameterName);
        }

        // Text PostgreSQL cannot store is the caller's to fix (Internal/Nul.cs).
        Nul.Reject(definition.Name, parameterName, "AgentDefinition.Name");
        Nul.Reject(definition.Model, parameterName, "AgentDefinition.Model");
        Nul.Reject(definition.Description, parameterName, "AgentDefinition.Description");
        Nul.Reject(definition.SystemPrompt, parameterName, "AgentDefinition.SystemPrompt");
        OutputSchemas.Validate(definition.OutputSchema, parameterName, "AgentDefinition.OutputSchema");

        if (definition.MaxTokens is <= 0)
        {
            throw new ArgumentException($"AgentDefinition.MaxTokens must be positive (was {definition.MaxTokens}); leave it null for 4096.", parameterName);
        }

        if (definition.Temperature is { } temperature && (double.IsNaN(temperature) || temperature is < 0 or > 1))
        {
            throw new ArgumentException($"AgentDefinition.Temperature must be between 0 and 1 (was {temperature}); leave it null for the model's default.", parameterName);
        }

        if (definition.TopP is { } topP && (double.IsNaN(topP) || topP is < 0 or > 1))
        {
            throw new ArgumentException($"AgentDefinition.TopP must be between 0 and 1 (was {topP}); leave it null for the model's default.", parameterName);
        }

        if (definition.TopK is <= 0)
        {
            throw new ArgumentException($"AgentDefinition.TopK must be positive (was {definition.TopK}); leave it null for the model's default.", parameterName);
        }

        RunLimits.ValidateMaxIterations(definition.MaxIterations, parameterName, "AgentDefinition.MaxIterations");
        RunLimits.ValidateTokenBudget(definition.TokenBudget, parameterName, "AgentDefinition.TokenBudget");
        ValidateThinking(definition, parameterName);

        if (definition.Tools is not null)
        {
            foreach (var tool in definition.Tools)
            {
                if (!ToolNames.IsValid(tool))
                {
                    throw new ArgumentException(
                        $"AgentDefinition.Tools contains '{tool}', which is not a valid tool name ({ToolNames.Rule}); no tool could ever be registered under it.",
                        parameterName);
                }
            }

            if (definition.Tools.Distinct(StringComparer.Ordinal).Count() != definition.Tools.Count)
            {
                throw new ArgumentException("AgentDefinition.Tools lists a tool more than once.", parameterName);
            }
        }

        ValidateMemory(definition, parameterName);
        ValidateServerTools(definition, parameterName);

        if (definition.ToolsRequiringApproval is { } approval)
        {
            foreach (var name in approval)
            {
                if (name != "*" && !ToolNames.IsValid(name))
                {
                    throw new ArgumentException(
                        $"AgentDefinition.ToolsRequiringApproval contains '{name}', which is neither \"*\" nor a valid tool name ({ToolNames.Rule}).",
                        parameterName);
                }
            }

            if (approval.Distinct(StringComparer.Ordinal).Count() != approval.Count)
            {
                throw new ArgumentException("AgentDefinition.ToolsRequiringApproval lists a name more than once.", parameterName);
            }
        }

        if (definition.AgentIds is null)
        {
            throw new ArgumentException("AgentDefinition.AgentIds is null; use an empty list for an agent without delegates.", parameterName);
        }

        if (definition.AgentIds.Contains(Guid.Empty) || definition.AgentIds.Distinct().Count() != definition.AgentIds.Count)
        {
            throw new ArgumentException("AgentDefinition.AgentIds must list distinct, non-empty agent ids.", parameterName);
        }

        var config = JsonMapping.ToJsonObject(definition.Config, "AgentDefinition.Config");
        if (definition.Config is { } c && c.TryGetValue(Claude.RequestBuilder.ContextManagementKey, out var management)
            && System.Text.Json.JsonSerializer.SerializeToElement(management) is var element
            && (element.ValueKind != System.Text.Json.JsonValueKind.Object
                || !element.TryGetProperty("edits", out var edits) || edits.ValueKind != System.Text.Json.JsonValueKind.Array))
        {
            throw new ArgumentException(
                "AgentDefinition.Config[\"context_management\"] must be Claude's context_management object with an \"edits\" list, for example " +
                "new Dictionary<string, object?> { [\"edits\"] = new[] { new Dictionary<string, object?> { [\"type\"] = \"clear_tool_uses_20250919\" } } }; " +
                "it is sent to Claude as is.", parameterName);
        }

        return (JsonMapping.ToJsonObject(definition.Metadata, "AgentDefinition.Metadata"), config);
    }

    private static void ValidateMemory(AgentDefinition definition, string parameterName)
    {
        if (definition.Memory is not { } memory)
        {
            return;
        }

        if (memory.MaxFileBytes <= 0 || memory.MaxStoreBytes <= 0)
        {
            throw new ArgumentException(
                $"AgentDefinition.Memory of agent '{definition.Name}' has MaxFileBytes {memory.MaxFileBytes} and MaxStoreBytes {memory.MaxStoreBytes}; both must be " +
                $"positive (the defaults are {AgentMemory.DefaultMaxFileBytes} and {AgentMemory.DefaultMaxStoreBytes}).", parameterName);
        }

        if (memory.MetadataKey is { } key)
        {
            Nul.Reject(key, parameterName, "AgentDefinition.Memory.MetadataKey");
        }

        if (definition.Tools?.Contains(Memory.MemoryTool.ToolName, StringComparer.Ordinal) == true)
        {
            throw new ArgumentException(
                $"AgentDefinition.Tools of agent '{definition.Name}' lists '{Memory.MemoryTool.ToolName}', and the agent has a Memory: Claude's memory tool takes " +
                "that name. Remove it from Tools (the memory tool needs no registration), or rename your tool.", parameterName);
        }
    }

    // Server tools are offered next to the client tools, the delegates and the memory tool: every name must be unique, or Claude
    // refuses the request ("Tool names must be unique") and every run of the agent fails.
    private static void ValidateServerTools(AgentDefinition definition, string parameterName)
    {
        if (definition.ServerTools is not { Count: > 0 } serverTools)
        {
            return;
        }

        if (serverTools.Any(t => t is null))
        {
            throw new ArgumentException($"AgentDefinition.ServerTools of agent '{definition.Name}' holds a null entry.", parameterName);
        }

        var duplicate = serverTools.GroupBy(t => t.Name, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new ArgumentException(
                $"AgentDefinition.ServerTools of agent '{definition.Name}' has two tools named '{duplicate.Key}'; Claude requires unique tool names. Keep one.",
                parameterName);
        }

        if (serverTools.Count(t => t.IsToolSearch) > 1)
        {
            throw new ArgumentException(
                $"AgentDefinition.ServerTools of agent '{definition.Name}' has more than one tool search tool ({string.Join(", ", serverTools.Where(t => t.IsToolSearch).Select(t => t.Name))}); " +
                "keep one: each of them searches the same deferred tools.", parameterName);
        }

        foreach (var tool in serverTools)
        {
            if (definition.Tools?.Contains(tool.Name, StringComparer.Ordinal) == true)
            {
                throw new ArgumentException(
                    $"AgentDefinition.Tools of agent '{definition.Name}' lists '{tool.Name}', the name of its server tool {tool.Type} in ServerTools; Claude could not tell " +
                    "them apart. Remove one of them, or rename your tool.", parameterName);
            }

            if (definition.Memory is not null && tool.Name == Memory.MemoryTool.ToolName)
            {
                throw new ArgumentException(
                    $"AgentDefinition.ServerTools of agent '{definition.Name}' has a tool named '{tool.Name}', the name of Claude's memory tool, and the agent has a Memory. " +
                    "Rename the server tool, or leave Memory null.", parameterName);
            }

            if (definition.ToolsRequiringApproval?.Contains(tool.Name, StringComparer.Ordinal) == true)
            {
                throw new ArgumentException(
                    $"AgentDefinition.ToolsRequiringApproval of agent '{definition.Name}' lists '{tool.Name}', a server tool: Claude runs it on Anthropic's side within " +
                    "its answer, so no call of it can wait for a person. Remove it from ToolsRequiringApproval (or the tool from ServerTools).", parameterName);
            }

            foreach (var name in tool.AlwaysLoadedTools)
            {
                if (serverTools.Any(t => t.Name == name) || (definition.Memory is not null && name == Memory.MemoryTool.ToolName))
                {
                    throw new ArgumentException(
                        $"AgentDefinition.ServerTools of agent '{definition.Name}': the tool search lists '{name}' in AlwaysLoadedTools, but only client tools and " +
                        "delegate agents are deferred (server tools and the memory tool are always loaded). Remove it.", parameterName);
                }

                if (definition.Tools is not null && !definition.Tools.Contains(name, StringComparer.Ordinal) && definition.AgentIds.Count == 0)
                {
                    throw new ArgumentException(
                        $"AgentDefinition.ServerTools of agent '{definition.Name}': the tool search lists '{name}' in AlwaysLoadedTools, which is not in its Tools " +
                        "and it has no delegate agents. Fix the name, or add the tool to Tools.", parameterName);
                }
            }
        }
    }

    // Claude's rules for thinking (every model call of the agent would otherwise fail with a 400): a budget of at least 1024
    // tokens and below max_tokens, and with thinking on, no temperature but 1, no top_k, no top_p below 0.95.
    private static void ValidateThinking(AgentDefinition definition, string parameterName)
    {
        if (definition.Effort is { } effort && !Enum.IsDefined(effort))
        {
            throw new ArgumentException($"AgentDefinition.Effort is {(int)effort}, which is not an AgentEffort value.", parameterName);
        }

        if (definition.Thinking is not { } thinking || thinking.Type == AgentThinkingType.Disabled)
        {
            return;
        }

        if (thinking.Type == AgentThinkingType.Enabled)
        {
            var budget = thinking.BudgetTokens ?? 0;
            if (budget < 1024)
            {
                throw new ArgumentException(
                    $"AgentDefinition.Thinking has a budget of {budget} tokens; Claude's minimum is 1024: use AgentThinking.Enabled(1024) or more.",
                    parameterName);
            }

            var maxTokens = definition.MaxTokens ?? Claude.RequestBuilder.DefaultMaxTokens;
            if (budget >= maxTokens)
            {
                throw new ArgumentException(
                    $"AgentDefinition.Thinking has a budget of {budget} tokens, which must be less than AgentDefinition.MaxTokens " +
                    $"({maxTokens}{(definition.MaxTokens is null ? ", the default" : "")}): thinking counts towards max_tokens. " +
                    "Raise MaxTokens or lower the budget.", parameterName);
            }
        }

        if (definition.Temperature is { } temperature && temperature != 1)
        {
            throw new ArgumentException(
                $"AgentDefinition.Temperature is {temperature}, but with AgentDefinition.Thinking Claude only accepts 1: leave Temperature null, or turn thinking off.",
                parameterName);
        }

        if (definition.TopK is { } topK)
        {
            throw new ArgumentException(
                $"AgentDefinition.TopK is {topK}, but Claude refuses top_k with AgentDefinition.Thinking: leave TopK null, or turn thinking off.",
                parameterName);
        }

        // Rounded as it is sent: a stored 0.95 reads back as 0.949999988 (REAL).
        if (definition.TopP is { } topP && Math.Round(topP, 6) < 0.95)
        {
            throw new ArgumentException(
                $"AgentDefinition.TopP is {topP}, but with AgentDefinition.Thinking Claude only accepts 0.95 to 1: leave TopP null, or turn thinking off.",
                parameterName);
        }
    }

    // Delegates are offered to Claude as tools named after them: the names must be valid tool names and unique among the
    // agent's tools.
    // Agent writes and deletes run in a transaction of their own, so the delegates a write checks stay locked until it commits
    // (AgentSql.GetByIdsForDelegation).
    // Writers lock an agent's delegates before the agent, which is one order only while delegation has no cycle: two agents
    // that delegate to each other, updated at once, can deadlock, and PostgreSQL aborts one of them; it is run again (it
    // wrote nothing), a few times.
    private async Task<T> InAgentTransactionAsync<T>(Func<NpgsqlTransaction, Task<T>> work, CancellationToken cancellationToken)
    {
        for (var attempt = 1; ; attempt++)
        {
            var connection = await _dataSource.OpenConnectionAsync(cancellationToken).ConfigureAwait(false);
            await using (connection.ConfigureAwait(false))
            {
                var transaction = await connection.BeginTransactionAsync(cancellationToken).ConfigureAwait(false);
                await using (transaction.ConfigureAwait(false))
                {
                    try
                    {
                        var result = await work(transaction).ConfigureAwait(false);
                        await transaction.CommitAsync(cancellationToken).ConfigureAwait(false);
                        return result;
                    }
                    catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.DeadlockDetected && attempt < MaxAgentWriteAttempts)
                    {
                        // Rolled back by the disposal; nothing of this attempt is left.
                    }
                }
            }
        }
    }

    private const int MaxAgentWriteAttempts = 3;

    private async Task ValidateDelegatesAsync(AgentDefinition definition, NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        if (definition.AgentIds.Count == 0)
        {
            CheckApprovalNames(definition, []);
            return;
        }

        var delegates = await _sql.Agents.GetForDelegationAsync(_dataSource, definition.AgentIds, transaction, cancellationToken).ConfigureAwait(false);
        foreach (var id in definition.AgentIds)
        {
            if (!delegates.Any(d => d.Id == id))
            {
                throw new AgentPgException(AgentPgErrorCode.AgentNotFound, "ValidateAgent",
                    $"Agent '{definition.Name}' lists delegate agent {id} in AgentIds, but no agent has that id.")
                {
                    Context = new Dictionary<string, object?> { ["agent_id"] = id },
                };
            }
        }

        CheckDelegateNames(definition.Name, definition.Tools, delegates.Select(d => d.Name).ToList(), definition.ServerTools);
        if (definition.Memory is not null && delegates.Any(d => d.Name == Memory.MemoryTool.ToolName))
        {
            throw new ArgumentException(
                $"Agent '{definition.Name}' has a Memory and delegates to an agent named '{Memory.MemoryTool.ToolName}', the name of Claude's memory tool. " +
                "Rename the delegate agent, or leave Memory null.", nameof(definition));
        }

        CheckApprovalNames(definition, [.. definition.AgentIds.Select(id => delegates.First(d => d.Id == id).Name)]);
    }

    // An approval name must be one of the agent's tools (any tool name when Tools is null: the executing instance decides) or
    // one of its delegates, so a typo cannot silently leave a dangerous tool unguarded.
    private static void CheckApprovalNames(AgentDefinition definition, IReadOnlyList<string> delegateNames)
    {
        if (definition.ToolsRequiringApproval is not { Count: > 0 } approval || definition.Tools is null)
        {
            return;
        }

        foreach (var name in approval)
        {
            if (name != "*" && !definition.Tools.Contains(name, StringComparer.Ordinal) && !delegateNames.Contains(name, StringComparer.Ordinal)
                && !(name == Memory.MemoryTool.ToolName && definition.Memory is not null))
            {
                // A delegate's name read before it was renamed is the likely mistake: say the names they have now.
                var delegates = delegateNames.Count == 0 ? "" : $" (its delegate agents are named {string.Join(", ", delegateNames.Select(n => $"'{n}'"))})";
                throw new ArgumentException(
                    $"AgentDefinition.ToolsRequiringApproval of agent '{definition.Name}' lists '{name}', which is neither in its Tools nor the " +
                    $"name of a delegate agent in its AgentIds{delegates}. Add the tool to Tools, or fix the name (\"*\" requires approval for every call).",
                    nameof(definition));
            }
        }
    }

    private async Task ValidateRenameAsync(AgentDefinition definition, NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        foreach (var delegator in await _sql.Agents.GetDelegatorsAsync(_dataSource, definition.Id, transaction, cancellationToken).ConfigureAwait(false))
        {
            var others = await _sql.Agents.GetByIdsAsync(_dataSource, [.. delegator.AgentIds.Where(id => id != definition.Id)], transaction, cancellationToken).ConfigureAwait(false);
            CheckDelegateNames(delegator.Name, delegator.Tools, [.. others.Select(o => o.Name), definition.Name], delegator.ServerTools);
        }
    }

    private static void CheckDelegateNames(
        string agentName, IReadOnlyList<string>? tools, IReadOnlyList<string> delegateNames, IReadOnlyList<ServerTool>? serverTools)
    {
        foreach (var name in delegateNames)
        {
            if (serverTools?.FirstOrDefault(t => t.Name == name) is { } serverTool)
            {
                throw new ArgumentException(
                    $"Agent '{agentName}' has a server tool ({serverTool.Type}) and a delegate agent both named '{name}'; Claude could not tell them apart. " +
                    "Rename the delegate agent, or remove the server tool.");
            }

            if (!ToolNames.IsValid(name))
            {
                throw new ArgumentException(
                    $"Agent '{name}' cannot be a delegate of agent '{agentName}': delegates are offered to Claude as tools named after " +
                    $"them, and tool names must match {ToolNames.Rule}. Rename it, for example to '{SuggestToolName(name)}'.");
            }

            if (tools?.Contains(name, StringComparer.Ordinal) == true)
            {
                throw new ArgumentException(
                    $"Agent '{agentName}' has a tool and a delegate agent both named '{name}'; Claude could not tell them apart. Rename one of them.");
            }
        }

        var duplicate = delegateNames.GroupBy(n => n, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
        if (duplicate is not null)
        {
            throw new ArgumentException(
                $"Agent '{agentName}' has two delegate agents named '{duplicate.Key}'; Claude could not tell them apart. Rename one of them.");
        }
    }

    private static string SuggestToolName(string name)
    {
        var chars = name.Select(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-' ? c : '_').Take(64).ToArray();
        return chars.Length == 0 ? "agent" : new string(chars);
    }

    private static AgentPgException AgentNotFound(Guid id, string operation)
        => new(AgentPgErrorCode.AgentNotFound, operation, $"No agent has id {id}.")
        {
            Context = new Dictionary<string, object?> { ["agent_id"] = id },
        };

    private static AgentPgException AgentExists(AgentDefinition definition, string operation, Exception inner)
        => new(AgentPgErrorCode.AgentAlreadyExists, operation,
            $"An agent named '{definition.Name}' with the same metadata already exists. Use GetOrCreateAgentAsync to reuse it, " +
            "or give the new agent a different name or metadata.", inner)
        {
            Context = new Dictionary<string, object?> { ["name"] = definition.Name },
        };
}
