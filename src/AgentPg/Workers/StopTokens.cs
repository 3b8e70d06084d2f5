namespace AgentPg.Workers;

/// <summary>The two late phases of a stop, as in-flight work sees them.</summary>
/// <param name="HardStop">Fires at the caller's deadline: work still executing (a tool, a stream) is cancelled.</param>
/// <param name="Abandon">Fires when the grace after the hard stop is over and the instance releases what it still holds:
/// only then is a result that was already obtained no longer worth writing (review D13).</param>
internal readonly record struct StopTokens(CancellationToken HardStop, CancellationToken Abandon);
