using System.Collections.Concurrent;

namespace AgentPg.Runs;

/// <summary>The ids of the runs and tool executions this instance's workers are processing, from the moment their claim
/// returns until their worker is done. Each heartbeat records them (agentpg_instances.held_work), so the leader can tell
/// work held by a live instance but abandoned by its worker (see <see cref="Maintenance.StuckWorkSweeper"/>).</summary>
/// <remarks>A claim is in flight from before its statement is sent until its items are added here: a snapshot taken
/// meanwhile can miss work the instance is about to hold, so it says it is incomplete, and the heartbeat does not let the
/// report vouch for claims made after the last complete one (see agentpg_release_unheld_work).</remarks>
internal sealed class HeldWork
{
    private readonly ConcurrentDictionary<Guid, byte> _ids = new();
    private int _claimsInFlight;

    public void Add(Guid id) => _ids[id] = 0;

    public void Remove(Guid id) => _ids.TryRemove(id, out _);

    public int Count => _ids.Count;

    /// <summary>Before a claim is sent; <see cref="EndClaim"/> once what it claimed was added (or it failed).</summary>
    public void BeginClaim() => Interlocked.Increment(ref _claimsInFlight);

    public void EndClaim() => Interlocked.Decrement(ref _claimsInFlight);

    /// <summary>The ids held now, and whether no claim was in flight (then every claim that began before holds its items
    /// here, or let them go).</summary>
    public HeldSnapshot Snapshot()
    {
        // Read before the ids: a claim that ended before this read added its items before it (Interlocked is a full fence).
        var complete = Volatile.Read(ref _claimsInFlight) == 0;
        return new HeldSnapshot([.. _ids.Keys], complete);
    }
}

/// <summary>What <see cref="HeldWork.Snapshot"/> saw.</summary>
/// <param name="Ids">The runs and tool executions held.</param>
/// <param name="Complete">No claim was in flight: every claim begun before the snapshot is in <paramref name="Ids"/>
/// unless its worker is done with it.</param>
internal readonly record struct HeldSnapshot(Guid[] Ids, bool Complete);
