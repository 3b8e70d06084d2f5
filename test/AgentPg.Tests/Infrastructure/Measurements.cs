using System.Collections.Concurrent;
using System.Diagnostics.Metrics;

namespace AgentPg.Tests.Infrastructure;

/// <summary>Collects every measurement of AgentPg's meter: instrument, value and tags.</summary>
/// <remarks>The meter is process-wide and its tags name no run or schema: a class that counts measurements runs in the
/// <c>TelemetryTests</c> collection, which runs alone.</remarks>
public sealed class Measurements : IDisposable
{
    private readonly MeterListener _listener;
    private readonly ConcurrentBag<(string Instrument, double Value, Dictionary<string, object?> Tags)> _all = [];

    public Measurements()
    {
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == "AgentPg")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        _listener.SetMeasurementEventCallback<long>(Record);
        _listener.SetMeasurementEventCallback<double>(Record);
        _listener.Start();
    }

    public List<(string Instrument, double Value, Dictionary<string, object?> Tags)> Of(string instrument)
        => _all.Where(m => m.Instrument == instrument).ToList();

    /// <summary>Reads the observable instruments (gauges) once.</summary>
    public void Observe() => _listener.RecordObservableInstruments();

    /// <summary>Forgets what was measured so far.</summary>
    public void Clear() => _all.Clear();

    public void Dispose() => _listener.Dispose();

    private void Record<T>(Instrument instrument, T value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
        => _all.Add((instrument.Name, Convert.ToDouble(value, System.Globalization.CultureInfo.InvariantCulture),
            tags.ToArray().ToDictionary(t => t.Key, t => t.Value)));
}
