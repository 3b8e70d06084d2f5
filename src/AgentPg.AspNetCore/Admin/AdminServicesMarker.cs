namespace AgentPg.AspNetCore.Admin;

/// <summary>Registered by <c>AddAgentPgAdmin</c>, so <c>MapAgentPgAdmin</c> can say what is missing instead of failing at the
/// first request.</summary>
internal sealed class AdminServicesMarker;
