using System.Collections.Concurrent;
using System.Diagnostics;

namespace AgentPg.Tests.Infrastructure;

/// <summary>The text of every statement Npgsql runs (its tracing spans) that names <paramref name="schema"/>: a test class's
/// schema, so the statements of the classes running beside it are not counted.</summary>
public sealed class TracedStatements : IDisposable
{
    private readonly ActivityListener _listener;

    public TracedStatements(string schema)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = s => s.Name == "Npgsql",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = a =>
            {
                if ((a.GetTagItem("db.query.text") ?? a.GetTagItem("db.statement")) is string text && text.Contains(schema, StringComparison.Ordinal))
                {
                    Texts.Add(text);
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public ConcurrentBag<string> Texts { get; } = [];

    /// <summary>How many of the statements contain <paramref name="fragment"/>.</summary>
    public int Count(string fragment) => Texts.Count(t => t.Contains(fragment, StringComparison.Ordinal));

    public void Dispose() => _listener.Dispose();
}
