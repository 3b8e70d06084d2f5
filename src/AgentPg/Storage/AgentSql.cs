using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_agents.</summary>
internal sealed class AgentSql
{
    private const string Columns =
        "id, name, description, model, system_prompt, max_tokens, temperature, top_k, top_p, tool_names, agent_ids, " +
        "metadata::text, config::text, created_at, updated_at, tools_requiring_approval, thinking::text, effort, output_schema::text, memory::text, " +
        "max_iterations, token_budget, server_tools::text";

    // Positions in Columns.
    private const int IdColumn = 0, NameColumn = 1, DescriptionColumn = 2, ModelColumn = 3, SystemPromptColumn = 4, MaxTokensColumn = 5,
        TemperatureColumn = 6, TopKColumn = 7, TopPColumn = 8, ToolNamesColumn = 9, AgentIdsColumn = 10, MetadataColumn = 11, ConfigColumn = 12,
        CreatedAtColumn = 13, UpdatedAtColumn = 14, ToolsRequiringApprovalColumn = 15, ThinkingColumn = 16, EffortColumn = 17,
        OutputSchemaColumn = 18, MemoryColumn = 19, MaxIterationsColumn = 20, TokenBudgetColumn = 21, ServerToolsColumn = 22;

    // Positions in CountReferences' and Count's SELECT lists.
    private const int RunsColumn = 0, ExecutionsColumn = 1, CountColumn = 0;

    public AgentSql(SchemaName s)
    {
        var t = $"{s}.agentpg_agents";
        // $1 name, $2 description, $3 model, $4 system_prompt, $5 max_tokens, $6 temperature, $7 top_k, $8 top_p,
        // $9 tool_names, $10 agent_ids, $11 metadata, $12 config, $13 tools_requiring_approval, $14 thinking, $15 effort, $16 output_schema,
        // $17 memory, $18 max_iterations, $19 token_budget, $20 server_tools
        Insert = $"""
            INSERT INTO {t} (name, description, model, system_prompt, max_tokens, temperature, top_k, top_p,
                             tool_names, agent_ids, metadata, config, tools_requiring_approval, thinking, effort, output_schema, memory,
                             max_iterations, token_budget, server_tools)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
            RETURNING {Columns}
            """;
        // Same parameters; returns no row when (name, metadata) already exists.
        InsertIfAbsent = $"""
            INSERT INTO {t} (name, description, model, system_prompt, max_tokens, temperature, top_k, top_p,
                             tool_names, agent_ids, metadata, config, tools_requiring_approval, thinking, effort, output_schema, memory,
                             max_iterations, token_budget, server_tools)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20)
            ON CONFLICT ON CONSTRAINT agent_unique_name_metadata DO NOTHING
            RETURNING {Columns}
            """;
        // $1 id, then the insert parameters as $2..$21.
        Update = $"""
            UPDATE {t}
               SET name = $2, description = $3, model = $4, system_prompt = $5, max_tokens = $6, temperature = $7,
                   top_k = $8, top_p = $9, tool_names = $10, agent_ids = $11, metadata = $12, config = $13,
                   tools_requiring_approval = $14, thinking = $15, effort = $16, output_schema = $17, memory = $18,
                   max_iterations = $19, token_budget = $20, server_tools = $21,
                   updated_at = now()
             WHERE id = $1
            """;
        // The name of agent $1, locked until the commit of the update that replaces it: two renames of one agent serialise, and
        // the second sees the first's name (FollowRename must replace the name the delegators list).
        LockForUpdate = $"SELECT name FROM {t} WHERE id = $1 FOR NO KEY UPDATE";
        // Agent $1 is renamed from $2 to $3: its delegators' ToolsRequiringApproval entries for $2 name $3 instead, so a
        // delegation that needed a person's approval still does (a delegator listing $3 already keeps it once).
        FollowRename = $"""
            UPDATE {t}
               SET tools_requiring_approval = CASE WHEN $3 = ANY (tools_requiring_approval) THEN array_remove(tools_requiring_approval, $2)
                                                   ELSE array_replace(tools_requiring_approval, $2, $3) END,
                   updated_at = now()
             WHERE agent_ids @> ARRAY[$1]::uuid[] AND $2 = ANY (tools_requiring_approval)
            """;
        GetById = $"SELECT {Columns} FROM {t} WHERE id = $1";
        GetByIds = $"SELECT {Columns} FROM {t} WHERE id = ANY($1)";
        // agent_ids has no foreign key, so a write that lists delegates locks them until its commit, and a delete locks the agent
        // before it looks for delegators: whichever comes second sees the first one's result (a delete waits for the write and
        // then finds the delegator; a write waits for the delete and then misses the delegate). SHARE, not the KEY SHARE a
        // foreign key takes: the write also checks its ToolsRequiringApproval against the delegates' names, so it must wait for
        // a rename in flight (LockForUpdate) and read the new name — with KEY SHARE it read the old one, passed, and stored a name
        // the rename's FollowRename, already past, never rewrote. Writers lock delegates before the agent itself (the rename's
        // order too: the agent, then its delegators), so a rename and an update of its delegator do not deadlock.
        GetByIdsForDelegation = $"{GetByIds} FOR SHARE";
        LockForDelete = $"SELECT id FROM {t} WHERE id = $1 FOR UPDATE";
        // Exact (name, metadata): the unique key, used by GetOrCreate.
        GetByNameAndMetadata = $"SELECT {Columns} FROM {t} WHERE name = $1 AND metadata = $2";
        // Containment filter; oldest first so the answer is stable when several tenants share a name.
        GetByName = $"SELECT {Columns} FROM {t} WHERE name = $1 AND metadata @> $2 ORDER BY created_at, id LIMIT 1";
        // Agents that list $1 as a delegate.
        GetDelegators = $"SELECT {Columns} FROM {t} WHERE agent_ids @> ARRAY[$1]::uuid[]";
        Delete = $"DELETE FROM {t} WHERE id = $1";
        // The delegates of agent $1, in AgentIds order (each is offered to Claude as a tool).
        // The agents of the runs claimed earlier in the transaction, and their delegates (the delegating agent first), read
        // in the claim's batch for the claimed runs' first iterations.
        ForClaimed = $"SELECT {Columns} FROM {t} WHERE id = ANY ({RunSql.ClaimedAgentIds})";
        DelegatesForClaimed = $"""
            SELECT a.id, d.id, d.name, d.description
              FROM {t} a JOIN {t} d ON d.id = ANY (a.agent_ids)
             WHERE a.id = ANY ({RunSql.ClaimedAgentIds})
             ORDER BY a.id, array_position(a.agent_ids, d.id)
            """;
        GetDelegates = $"""
            SELECT d.id, d.name, d.description
              FROM {t} a JOIN {t} d ON d.id = ANY (a.agent_ids)
             WHERE a.id = $1
             ORDER BY array_position(a.agent_ids, d.id)
            """;
        List = $"SELECT {Columns} FROM {t} WHERE metadata @> $1 ORDER BY name, id LIMIT $2 OFFSET $3";
        Count = $"SELECT count(*)::int FROM {t} WHERE metadata @> $1";
        CountReferences = $"""
            SELECT (SELECT count(*) FROM {s}.agentpg_runs WHERE agent_id = $1)::int,
                   (SELECT count(*) FROM {s}.agentpg_tool_executions WHERE agent_id = $1)::int
            """;
    }

    public string Insert { get; }

    public string InsertIfAbsent { get; }

    public string Update { get; }

    public string LockForUpdate { get; }

    public string FollowRename { get; }

    public string GetById { get; }

    public string GetByIds { get; }

    public string GetByIdsForDelegation { get; }

    public string LockForDelete { get; }

    public string GetByNameAndMetadata { get; }

    public string GetByName { get; }

    public string GetDelegators { get; }

    public string Delete { get; }

    public string GetDelegates { get; }

    public string ForClaimed { get; }

    public string DelegatesForClaimed { get; }

    public string List { get; }

    public string Count { get; }

    public string CountReferences { get; }

    /// <summary>Adds <see cref="GetById"/>; read its row with <see cref="Read"/>.</summary>
    public void AddGetById(NpgsqlBatch batch, Guid agentId) => batch.Append(GetById, P.Uuid(agentId));

    /// <summary>Adds <see cref="GetDelegates"/>; read each row with <see cref="ReadDelegate"/>.</summary>
    public void AddGetDelegates(NpgsqlBatch batch, Guid agentId) => batch.Append(GetDelegates, P.Uuid(agentId));

    /// <summary>Adds <see cref="ForClaimed"/> and <see cref="DelegatesForClaimed"/> after a claim in its batch; read them with
    /// <see cref="ReadForClaimedAsync"/>.</summary>
    public void AddForClaimed(NpgsqlBatch batch)
    {
        batch.Append(ForClaimed);
        batch.Append(DelegatesForClaimed);
    }

    /// <summary>Reads the results of <see cref="AddForClaimed"/>, the reader positioned on the first: the agents by id, and
    /// each agent's delegates in their order.</summary>
    public static async Task<(Dictionary<Guid, AgentDefinition> Agents, Dictionary<Guid, List<(Guid Id, string Name, string? Description)>> Delegates)>
        ReadForClaimedAsync(NpgsqlDataReader r, CancellationToken cancellationToken)
    {
        var agents = new Dictionary<Guid, AgentDefinition>();
        while (await r.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var agent = Read(r);
            agents[agent.Id] = agent;
        }

        await r.NextResultAsync(cancellationToken).ConfigureAwait(false);
        var delegates = new Dictionary<Guid, List<(Guid Id, string Name, string? Description)>>();
        while (await r.ReadAsync(cancellationToken).ConfigureAwait(false))
        {
            var of = r.GetGuid(0);
            if (!delegates.TryGetValue(of, out var list))
            {
                delegates[of] = list = [];
            }

            list.Add((r.GetGuid(1), r.GetString(2), r.IsDBNull(3) ? null : r.GetString(3)));
        }

        return (agents, delegates);
    }

    /// <summary>Reads a row of <see cref="GetDelegates"/>.</summary>
    public static (Guid Id, string Name, string? Description) ReadDelegate(NpgsqlDataReader r)
        => (r.GetGuid(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2));

    /// <summary>Inserts an agent and returns it; with <paramref name="ifAbsent"/>, null when (name, metadata) already exists.</summary>
    public Task<AgentDefinition?> InsertAsync(NpgsqlDataSource dataSource, AgentDefinition definition, string metadataJson, string configJson,
        bool ifAbsent, NpgsqlTransaction transaction, CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, ifAbsent ? InsertIfAbsent : Insert, Values(definition, metadataJson, configJson))
            .QueryFirstOrDefaultAsync(Read, cancellationToken);

    /// <summary>Replaces every field of agent <see cref="AgentDefinition.Id"/>; returns the rows updated (0 or 1).</summary>
    public Task<int> UpdateAsync(NpgsqlDataSource dataSource, AgentDefinition definition, string metadataJson, string configJson,
        NpgsqlTransaction transaction, CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, Update, [P.Uuid(definition.Id), .. Values(definition, metadataJson, configJson)]).ExecuteAsync(cancellationToken);

    /// <summary>Locks agent <paramref name="id"/> for an update (<see cref="LockForUpdate"/>); its current name, or null when there is none.</summary>
    public Task<string?> LockForUpdateAsync(NpgsqlDataSource dataSource, Guid id, NpgsqlTransaction transaction, CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, LockForUpdate, P.Uuid(id)).QueryFirstOrDefaultAsync(r => r.GetString(0), cancellationToken);

    /// <summary>Runs <see cref="FollowRename"/>: the delegators of agent <paramref name="id"/> that require approval for
    /// <paramref name="oldName"/> require it for <paramref name="newName"/>; returns how many changed.</summary>
    public Task<int> FollowRenameAsync(NpgsqlDataSource dataSource, Guid id, string oldName, string newName, NpgsqlTransaction transaction,
        CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, FollowRename, P.Uuid(id), P.Text(oldName), P.Text(newName)).ExecuteAsync(cancellationToken);

    /// <summary>Deletes an agent; returns the rows deleted (0 or 1).</summary>
    public Task<int> DeleteAsync(NpgsqlDataSource dataSource, Guid id, NpgsqlTransaction transaction, CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, Delete, P.Uuid(id)).ExecuteAsync(cancellationToken);

    /// <summary>Locks agent <paramref name="id"/> for its deletion (<see cref="LockForDelete"/>); false when there is none.</summary>
    public async Task<bool> LockForDeleteAsync(NpgsqlDataSource dataSource, Guid id, NpgsqlTransaction transaction, CancellationToken cancellationToken)
        => (await Db.Command(dataSource, transaction, LockForDelete, P.Uuid(id)).QueryFirstAsync(r => r.GetGuid(0), cancellationToken).ConfigureAwait(false)).Found;

    /// <summary>The delegates a write is about to list, locked until its commit (<see cref="GetByIdsForDelegation"/>).</summary>
    public Task<List<AgentDefinition>> GetForDelegationAsync(NpgsqlDataSource dataSource, IReadOnlyList<Guid> ids, NpgsqlTransaction transaction,
        CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, GetByIdsForDelegation, P.UuidArray(ids)).QueryListAsync(Read, cancellationToken);

    public Task<AgentDefinition?> GetByIdAsync(NpgsqlDataSource dataSource, Guid id, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, GetById, P.Uuid(id)).QueryFirstOrDefaultAsync(Read, cancellationToken);

    public Task<List<AgentDefinition>> GetByIdsAsync(NpgsqlDataSource dataSource, IReadOnlyList<Guid> ids, NpgsqlTransaction? transaction,
        CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, GetByIds, P.UuidArray(ids)).QueryListAsync(Read, cancellationToken);

    /// <summary>The oldest agent named <paramref name="name"/> whose metadata contains <paramref name="filterJson"/>.</summary>
    public Task<AgentDefinition?> GetByNameAsync(NpgsqlDataSource dataSource, string name, string filterJson, CancellationToken cancellationToken)
        => Db.Command(dataSource, null, GetByName, P.Text(name), P.Jsonb(filterJson)).QueryFirstOrDefaultAsync(Read, cancellationToken);

    public Task<AgentDefinition?> GetByNameAndMetadataAsync(NpgsqlDataSource dataSource, string name, string metadataJson,
        CancellationToken cancellationToken)
        => Db.Command(dataSource, null, GetByNameAndMetadata, P.Text(name), P.Jsonb(metadataJson)).QueryFirstOrDefaultAsync(Read, cancellationToken);

    public Task<List<AgentDefinition>> GetDelegatorsAsync(NpgsqlDataSource dataSource, Guid id, NpgsqlTransaction? transaction,
        CancellationToken cancellationToken)
        => Db.Command(dataSource, transaction, GetDelegators, P.Uuid(id)).QueryListAsync(Read, cancellationToken);

    /// <summary>How many runs and tool executions reference the agent.</summary>
    public async Task<(int Runs, int Executions)> CountReferencesAsync(NpgsqlDataSource dataSource, Guid id, CancellationToken cancellationToken)
        => (await Db.Command(dataSource, null, CountReferences, P.Uuid(id)).QueryFirstAsync(r => (r.GetInt32(RunsColumn), r.GetInt32(ExecutionsColumn)), cancellationToken)
            .ConfigureAwait(false)).Row;

    /// <summary>One page of the agents whose metadata contains <paramref name="filterJson"/>, by name, and how many match in all.</summary>
    public async Task<(List<AgentDefinition> Page, int Total)> ListAsync(NpgsqlDataSource dataSource, string filterJson, int limit, int offset,
        CancellationToken cancellationToken)
    {
        var batch = new NpgsqlBatch();
        await using (batch.ConfigureAwait(false))
        {
            batch.Append(List, P.Jsonb(filterJson), P.Int(limit), P.Int(offset));
            batch.Append(Count, P.Jsonb(filterJson));
            var agents = new List<AgentDefinition>();
            var reader = await batch.ExecuteReaderAsync(dataSource, prepare: false, cancellationToken).ConfigureAwait(false);
            await using (reader.ConfigureAwait(false))
            {
                while (await reader.ReadAsync(cancellationToken).ConfigureAwait(false))
                {
                    agents.Add(Read(reader));
                }

                await reader.NextResultAsync(cancellationToken).ConfigureAwait(false);
                await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
                return (agents, reader.GetInt32(CountColumn));
            }
        }
    }

    // The parameters of Insert and InsertIfAbsent ($1..$20), and of Update after the id.
    private static NpgsqlParameter[] Values(AgentDefinition d, string metadataJson, string configJson) =>
    [
        P.Text(d.Name), P.Text(d.Description), P.Text(d.Model), P.Text(d.SystemPrompt), P.Int(d.MaxTokens), P.Double(d.Temperature), P.Int(d.TopK),
        P.Double(d.TopP), P.TextArray(d.Tools), P.UuidArray(d.AgentIds), P.Jsonb(metadataJson), P.Jsonb(configJson),
        P.TextArray(d.ToolsRequiringApproval is { Count: > 0 } approval ? approval : null),
        P.Jsonb(d.Thinking?.ToJson()), P.Text(d.Effort is { } effort ? AgentEfforts.ToWire(effort) : null),
        P.Json(d.OutputSchema?.GetRawText()), P.Jsonb(d.Memory?.ToJson()), P.Int(d.MaxIterations), P.Long(d.TokenBudget),
        P.Json(ServerTool.ToJson(d.ServerTools is { Count: > 0 } serverTools ? serverTools : null)),
    ];

    public static AgentDefinition Read(NpgsqlDataReader r) => new()
    {
        Id = r.GetGuid(IdColumn),
        Name = r.GetString(NameColumn),
        Description = r.IsDBNull(DescriptionColumn) ? null : r.GetString(DescriptionColumn),
        Model = r.GetString(ModelColumn),
        SystemPrompt = r.IsDBNull(SystemPromptColumn) ? null : r.GetString(SystemPromptColumn),
        MaxTokens = r.IsDBNull(MaxTokensColumn) ? null : r.GetInt32(MaxTokensColumn),
        Temperature = r.IsDBNull(TemperatureColumn) ? null : r.GetFloat(TemperatureColumn),
        TopK = r.IsDBNull(TopKColumn) ? null : r.GetInt32(TopKColumn),
        TopP = r.IsDBNull(TopPColumn) ? null : r.GetFloat(TopPColumn),
        Tools = r.IsDBNull(ToolNamesColumn) ? null : r.GetFieldValue<string[]>(ToolNamesColumn),
        AgentIds = r.GetFieldValue<Guid[]>(AgentIdsColumn),
        Metadata = JsonMapping.FromJsonObject(r.GetString(MetadataColumn)),
        Config = JsonMapping.FromJsonObject(r.GetString(ConfigColumn)),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(CreatedAtColumn),
        UpdatedAt = r.GetFieldValue<DateTimeOffset>(UpdatedAtColumn),
        ToolsRequiringApproval = r.IsDBNull(ToolsRequiringApprovalColumn) ? null : r.GetFieldValue<string[]>(ToolsRequiringApprovalColumn),
        Thinking = r.IsDBNull(ThinkingColumn) ? null : AgentThinking.FromJson(r.GetString(ThinkingColumn)),
        Effort = r.IsDBNull(EffortColumn) ? null : AgentEfforts.FromWire(r.GetString(EffortColumn)),
        OutputSchema = r.IsDBNull(OutputSchemaColumn) ? null : OutputSchemas.Parse(r.GetString(OutputSchemaColumn)),
        Memory = r.IsDBNull(MemoryColumn) ? null : AgentMemory.FromJson(r.GetString(MemoryColumn)),
        MaxIterations = r.IsDBNull(MaxIterationsColumn) ? null : r.GetInt32(MaxIterationsColumn),
        TokenBudget = r.IsDBNull(TokenBudgetColumn) ? null : r.GetInt64(TokenBudgetColumn),
        ServerTools = r.IsDBNull(ServerToolsColumn) ? null : ServerTool.FromStoredJson(r.GetString(ServerToolsColumn)),
    };
}
