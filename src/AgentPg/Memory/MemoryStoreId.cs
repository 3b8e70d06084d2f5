namespace AgentPg;

/// <summary>Names one memory store (<see cref="AgentMemory"/>): the agent it belongs to and, for a store per session or per
/// session metadata value, which one.</summary>
/// <remarks>Make one with <see cref="ForAgent"/>, <see cref="ForSession"/> or <see cref="ForSessionMetadata"/>, matching the
/// agent's <see cref="AgentMemory.Scope"/>; the client's memory methods (<see cref="AgentPgClient.ListMemoryFilesAsync"/> …) take
/// it. A store that was never written is empty.</remarks>
public sealed record MemoryStoreId
{
    private MemoryStoreId(Guid agentId, Guid? sessionId, string? metadataKey, string? metadataValue)
    {
        AgentId = agentId;
        SessionId = sessionId;
        MetadataKey = metadataKey;
        MetadataValue = metadataValue;
    }

    /// <summary>Gets the agent the store belongs to.</summary>
    public Guid AgentId { get; }

    /// <summary>Gets the session of a store per session (<see cref="AgentMemoryScope.Session"/>); otherwise <see langword="null"/>.</summary>
    public Guid? SessionId { get; }

    /// <summary>Gets the session metadata key of a store per metadata value (<see cref="AgentMemoryScope.SessionMetadata"/>);
    /// otherwise <see langword="null"/>.</summary>
    public string? MetadataKey { get; }

    /// <summary>Gets the session metadata value of a store per metadata value: a string value as is, any other JSON value as its
    /// JSON text (<c>42</c>, <c>true</c>); otherwise <see langword="null"/>.</summary>
    public string? MetadataValue { get; }

    /// <summary>The store of an agent with <see cref="AgentMemory.PerAgent"/>.</summary>
    /// <param name="agentId">The agent.</param>
    /// <returns>The store's id.</returns>
    public static MemoryStoreId ForAgent(Guid agentId) => new(NotEmpty(agentId), null, null, null);

    /// <summary>The store of an agent with <see cref="AgentMemory.PerSession"/> in one session.</summary>
    /// <param name="agentId">The agent.</param>
    /// <param name="sessionId">The session.</param>
    /// <returns>The store's id.</returns>
    public static MemoryStoreId ForSession(Guid agentId, Guid sessionId)
        => new(NotEmpty(agentId), sessionId == Guid.Empty ? throw new ArgumentException("The session id is empty.", nameof(sessionId)) : sessionId, null, null);

    /// <summary>The store of an agent with <see cref="AgentMemory.PerSessionMetadata(string)"/> for one value, for example a
    /// tenant's.</summary>
    /// <param name="agentId">The agent.</param>
    /// <param name="metadataKey">The agent's <see cref="AgentMemory.MetadataKey"/>, for example <c>"tenant_id"</c>.</param>
    /// <param name="metadataValue">The value sessions carry under that key: a string as is, any other JSON value as its JSON
    /// text.</param>
    /// <returns>The store's id.</returns>
    public static MemoryStoreId ForSessionMetadata(Guid agentId, string metadataKey, string metadataValue)
    {
        ArgumentException.ThrowIfNullOrEmpty(metadataKey);
        ArgumentNullException.ThrowIfNull(metadataValue);
        return new(NotEmpty(agentId), null, metadataKey, metadataValue);
    }

    /// <summary>The store of a run of <paramref name="agentId"/> in <paramref name="sessionId"/>, whose metadata value under the
    /// memory's key is <paramref name="metadataValue"/>: null when the scope needs that value and the session has none.</summary>
    internal static MemoryStoreId? Of(AgentMemory memory, Guid agentId, Guid sessionId, string? metadataValue) => memory.Scope switch
    {
        AgentMemoryScope.Agent => ForAgent(agentId),
        AgentMemoryScope.Session => ForSession(agentId, sessionId),
        _ => metadataValue is null ? null : ForSessionMetadata(agentId, memory.MetadataKey!, metadataValue),
    };

    private static Guid NotEmpty(Guid agentId)
        => agentId == Guid.Empty ? throw new ArgumentException("The agent id is empty.", nameof(agentId)) : agentId;
}
