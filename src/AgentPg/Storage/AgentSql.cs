using AgentPg.Internal;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>SQL for agentpg_agents.</summary>
internal sealed class AgentSql
{
    private const string Columns =
        "id, name, description, model, system_prompt, max_tokens, temperature, top_k, top_p, tool_names, agent_ids, " +
        "metadata::text, config::text, created_at, updated_at, tools_requiring_approval";

    public AgentSql(SchemaName s)
    {
        var t = $"{s}.agentpg_agents";
        // $1 name, $2 description, $3 model, $4 system_prompt, $5 max_tokens, $6 temperature, $7 top_k, $8 top_p,
        // $9 tool_names, $10 agent_ids, $11 metadata, $12 config, $13 tools_requiring_approval
        Insert = $"""
            INSERT INTO {t} (name, description, model, system_prompt, max_tokens, temperature, top_k, top_p,
                             tool_names, agent_ids, metadata, config, tools_requiring_approval)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            RETURNING {Columns}
            """;
        // Same parameters; returns no row when (name, metadata) already exists.
        InsertIfAbsent = $"""
            INSERT INTO {t} (name, description, model, system_prompt, max_tokens, temperature, top_k, top_p,
                             tool_names, agent_ids, metadata, config, tools_requiring_approval)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
            ON CONFLICT ON CONSTRAINT agent_unique_name_metadata DO NOTHING
            RETURNING {Columns}
            """;
        // $1 id, then the insert parameters as $2..$14.
        Update = $"""
            UPDATE {t}
               SET name = $2, description = $3, model = $4, system_prompt = $5, max_tokens = $6, temperature = $7,
                   top_k = $8, top_p = $9, tool_names = $10, agent_ids = $11, metadata = $12, config = $13,
                   tools_requiring_approval = $14,
                   updated_at = now()
             WHERE id = $1
            """;
        GetById = $"SELECT {Columns} FROM {t} WHERE id = $1";
        GetByIds = $"SELECT {Columns} FROM {t} WHERE id = ANY($1)";
        // Exact (name, metadata): the unique key, used by GetOrCreate.
        GetByNameAndMetadata = $"SELECT {Columns} FROM {t} WHERE name = $1 AND metadata = $2";
        // Containment filter; oldest first so the answer is stable when several tenants share a name.
        GetByName = $"SELECT {Columns} FROM {t} WHERE name = $1 AND metadata @> $2 ORDER BY created_at, id LIMIT 1";
        // Agents that list $1 as a delegate.
        GetDelegators = $"SELECT {Columns} FROM {t} WHERE agent_ids @> ARRAY[$1]::uuid[]";
        Delete = $"DELETE FROM {t} WHERE id = $1";
        // The delegates of agent $1, in AgentIds order (each is offered to Claude as a tool).
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

    public string GetById { get; }

    public string GetByIds { get; }

    public string GetByNameAndMetadata { get; }

    public string GetByName { get; }

    public string GetDelegators { get; }

    public string Delete { get; }

    public string GetDelegates { get; }

    public string List { get; }

    public string Count { get; }

    public string CountReferences { get; }

    /// <summary>Adds <see cref="GetById"/>; read its row with <see cref="Read"/>.</summary>
    public void AddGetById(NpgsqlBatch batch, Guid agentId) => batch.Append(GetById, P.Uuid(agentId));

    /// <summary>Adds <see cref="GetDelegates"/>; read each row with <see cref="ReadDelegate"/>.</summary>
    public void AddGetDelegates(NpgsqlBatch batch, Guid agentId) => batch.Append(GetDelegates, P.Uuid(agentId));

    /// <summary>Reads a row of <see cref="GetDelegates"/>.</summary>
    public static (Guid Id, string Name, string? Description) ReadDelegate(NpgsqlDataReader r)
        => (r.GetGuid(0), r.GetString(1), r.IsDBNull(2) ? null : r.GetString(2));

    public static void AddValues(NpgsqlParameterCollection parameters, AgentDefinition d, string metadataJson, string configJson)
    {
        parameters.Add(P.Text(d.Name));
        parameters.Add(P.Text(d.Description));
        parameters.Add(P.Text(d.Model));
        parameters.Add(P.Text(d.SystemPrompt));
        parameters.Add(P.Int(d.MaxTokens));
        parameters.Add(P.Double(d.Temperature));
        parameters.Add(P.Int(d.TopK));
        parameters.Add(P.Double(d.TopP));
        parameters.Add(P.TextArray(d.Tools));
        parameters.Add(P.UuidArray(d.AgentIds));
        parameters.Add(P.Jsonb(metadataJson));
        parameters.Add(P.Jsonb(configJson));
        parameters.Add(P.TextArray(d.ToolsRequiringApproval is { Count: > 0 } approval ? approval : null));
    }

    public static AgentDefinition Read(NpgsqlDataReader r) => new()
    {
        Id = r.GetGuid(0),
        Name = r.GetString(1),
        Description = r.IsDBNull(2) ? null : r.GetString(2),
        Model = r.GetString(3),
        SystemPrompt = r.IsDBNull(4) ? null : r.GetString(4),
        MaxTokens = r.IsDBNull(5) ? null : r.GetInt32(5),
        Temperature = r.IsDBNull(6) ? null : r.GetFloat(6),
        TopK = r.IsDBNull(7) ? null : r.GetInt32(7),
        TopP = r.IsDBNull(8) ? null : r.GetFloat(8),
        Tools = r.IsDBNull(9) ? null : r.GetFieldValue<string[]>(9),
        AgentIds = r.GetFieldValue<Guid[]>(10),
        Metadata = JsonMapping.FromJsonObject(r.GetString(11)),
        Config = JsonMapping.FromJsonObject(r.GetString(12)),
        CreatedAt = r.GetFieldValue<DateTimeOffset>(13),
        UpdatedAt = r.GetFieldValue<DateTimeOffset>(14),
        ToolsRequiringApproval = r.IsDBNull(15) ? null : r.GetFieldValue<string[]>(15),
    };
}
