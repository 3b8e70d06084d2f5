using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg;

/// <summary>Claude's memory tool for an agent (<see cref="AgentDefinition.Memory"/>): which store the agent's notes live in, and
/// how large they may grow.</summary>
/// <remarks>
/// <para>An agent with a memory is offered Claude's client-executed memory tool (<c>{"type": "memory_20250818", "name": "memory"}</c>),
/// and AgentPg executes its commands (<c>view</c>, <c>create</c>, <c>str_replace</c>, <c>insert</c>, <c>delete</c>,
/// <c>rename</c> on paths under <c>/memories</c>) itself, against PostgreSQL: no tool to register. Each command's effect commits
/// in one transaction with its tool_result, so a crash or a retry never applies it twice.</para>
/// <para>The scope decides which runs share a store: <see cref="PerAgent"/> (every run of the agent),
/// <see cref="PerSession"/> (the runs of the agent in one session), or <see cref="PerSessionMetadata(string)"/> (the runs of the agent
/// in sessions whose metadata has the same value under a key — a tenant id, so tenants never read each other's notes). Read,
/// seed and clear a store with <see cref="AgentPgClient.ListMemoryFilesAsync"/> and the other memory methods of the client,
/// given its <see cref="MemoryStoreId"/>.</para>
/// </remarks>
public sealed record AgentMemory
{
    /// <summary>The default of <see cref="MaxFileBytes"/>: 64 KiB.</summary>
    public const int DefaultMaxFileBytes = 64 * 1024;

    /// <summary>The default of <see cref="MaxStoreBytes"/>: 1 MiB.</summary>
    public const int DefaultMaxStoreBytes = 1024 * 1024;

    private AgentMemory(AgentMemoryScope scope, string? metadataKey)
    {
        Scope = scope;
        MetadataKey = metadataKey;
    }

    /// <summary>Gets which runs share a store.</summary>
    public AgentMemoryScope Scope { get; }

    /// <summary>Gets the session metadata key whose value selects the store, for <see cref="AgentMemoryScope.SessionMetadata"/>;
    /// otherwise <see langword="null"/>.</summary>
    public string? MetadataKey { get; }

    /// <summary>Gets the largest a memory file may become through Claude's commands, in UTF-8 bytes (default
    /// <see cref="DefaultMaxFileBytes"/>).</summary>
    /// <remarks>A command that would make a file larger changes nothing and answers Claude with a tool error saying so.</remarks>
    public int MaxFileBytes { get; init; } = DefaultMaxFileBytes;

    /// <summary>Gets the largest a store may become through Claude's commands, in UTF-8 bytes of every file's path and content
    /// (default <see cref="DefaultMaxStoreBytes"/>).</summary>
    /// <remarks>A command that would make the store larger changes nothing and answers Claude with a tool error saying so.
    /// The application's own writes (<see cref="AgentPgClient.WriteMemoryFileAsync"/>) are not limited.</remarks>
    public int MaxStoreBytes { get; init; } = DefaultMaxStoreBytes;

    /// <summary>Gets one store per agent, shared by all its runs in every session.</summary>
    public static AgentMemory PerAgent { get; } = new(AgentMemoryScope.Agent, null);

    /// <summary>Gets one store per agent and session: what the agent notes in a session stays in it.</summary>
    public static AgentMemory PerSession { get; } = new(AgentMemoryScope.Session, null);

    /// <summary>One store per agent and value of the session metadata key <paramref name="metadataKey"/>, for example a tenant
    /// id: the runs of sessions created with the same value share a store, other values never see it.</summary>
    /// <param name="metadataKey">The session metadata key, for example <c>"tenant_id"</c>. A run in a session without this key
    /// gets a tool error for every memory command (nothing is read or written).</param>
    /// <returns>The setting.</returns>
    /// <exception cref="ArgumentException"><paramref name="metadataKey"/> is null or empty.</exception>
    public static AgentMemory PerSessionMetadata(string metadataKey)
    {
        ArgumentException.ThrowIfNullOrEmpty(metadataKey);
        return new(AgentMemoryScope.SessionMetadata, metadataKey);
    }

    /// <summary>The stored form: <c>{"scope": …, "metadata_key": …, "max_file_bytes": …, "max_store_bytes": …}</c>.</summary>
    internal string ToJson()
    {
        var json = new JsonObject
        {
            ["scope"] = Scope switch
            {
                AgentMemoryScope.Agent => "agent",
                AgentMemoryScope.Session => "session",
                _ => "session_metadata",
            },
        };
        if (MetadataKey is not null)
        {
            json["metadata_key"] = MetadataKey;
        }

        json["max_file_bytes"] = MaxFileBytes;
        json["max_store_bytes"] = MaxStoreBytes;
        return json.ToJsonString();
    }

    /// <summary>Reads what <see cref="ToJson"/> wrote.</summary>
    internal static AgentMemory FromJson(string json)
    {
        using var document = JsonDocument.Parse(json);
        var root = document.RootElement;
        var memory = root.GetProperty("scope").GetString() switch
        {
            "session" => PerSession,
            "session_metadata" => PerSessionMetadata(root.GetProperty("metadata_key").GetString()!),
            _ => PerAgent,
        };
        return memory with
        {
            MaxFileBytes = root.TryGetProperty("max_file_bytes", out var file) ? file.GetInt32() : DefaultMaxFileBytes,
            MaxStoreBytes = root.TryGetProperty("max_store_bytes", out var store) ? store.GetInt32() : DefaultMaxStoreBytes,
        };
    }
}

/// <summary>Which runs of an agent share a memory store (<see cref="AgentMemory.Scope"/>).</summary>
public enum AgentMemoryScope
{
    /// <summary>Every run of the agent (<see cref="AgentMemory.PerAgent"/>).</summary>
    Agent,

    /// <summary>The runs of the agent in one session (<see cref="AgentMemory.PerSession"/>).</summary>
    Session,

    /// <summary>The runs of the agent in sessions with the same value under a metadata key
    /// (<see cref="AgentMemory.PerSessionMetadata(string)"/>).</summary>
    SessionMetadata,
}
