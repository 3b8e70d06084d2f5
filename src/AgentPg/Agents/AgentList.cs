namespace AgentPg;

/// <summary>One page of agents and the number of agents that match the filter.</summary>
/// <param name="Agents">The agents of the page, ordered by name.</param>
/// <param name="TotalCount">How many agents match the filter in total.</param>
public sealed record AgentList(IReadOnlyList<AgentDefinition> Agents, int TotalCount);
