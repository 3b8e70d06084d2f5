using System.Collections.Concurrent;

namespace AgentPg.Runs;

/// <summary>The ids of the runs and tool executions this instance's workers are processing, from the moment their claim
/// returns until their worker is done. Each heartbeat records them (agentpg_instances.held_work), so the leader can tell
/// work held by a live instance but abandoned by its worker (see <see cref="Maintenance.StuckWorkSweeper"/>).</summary>
internal sealed class HeldWork
{
    private readonly ConcurrentDictionary<Guid, byte> _ids = new();

    public void Add(Guid id) => _ids[id] = 0;

    public void Remove(Guid id) => _ids.TryRemove(id, out _);

    public int Count => _ids.Count;

    public Guid[] Snapshot() => [.. _ids.Keys];
}
