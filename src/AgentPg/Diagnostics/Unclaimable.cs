namespace AgentPg.Diagnostics;

/// <summary>The explanation of a pending run that no live instance can claim, shared by
/// <see cref="AgentPgClient.GetRunDiagnosticsAsync"/>, the producer's wait warning and the leader's scan.</summary>
internal static class Unclaimable
{
    /// <summary>Why no live instance can claim the agent's runs and what to do, or null when one can.</summary>
    public static string? Describe(string schema, string agentName, IReadOnlyList<string>? agentTools, int liveInstances,
        IReadOnlyList<string> missingTools, bool hasEligibleInstance)
    {
        if (liveInstances == 0)
        {
            return $"No AgentPg instance is running on schema \"{schema}\": runs are processed only by started clients " +
                   "(AgentPgClient.StartAsync, or the hosted worker). Start a worker that registers the agent's tools; the run waits until then.";
        }

        if (hasEligibleInstance)
        {
            return null;
        }

        if (missingTools.Count > 0)
        {
            return $"Agent \"{agentName}\" lists {Tools(missingTools)} that no live instance registered ({liveInstances} live). " +
                   $"Register {(missingTools.Count == 1 ? "it" : "them")} on a worker (RegisterTool before StartAsync), or remove " +
                   $"{(missingTools.Count == 1 ? "it" : "them")} from the agent's Tools with UpdateAgentAsync; " +
                   "the run waits until then.";
        }

        return $"No live instance registered all of agent \"{agentName}\"'s {Tools(agentTools ?? [])}: each is registered somewhere, " +
               "but a run is claimed only by an instance that has every tool of its agent. Register them together on one worker.";
    }

    private static string Tools(IReadOnlyList<string> names)
        => (names.Count == 1 ? "tool " : "tools ") + string.Join(", ", names);
}
