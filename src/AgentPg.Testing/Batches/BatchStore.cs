using System.Collections.Concurrent;
using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>The outcome of one batch request, fixed when the batch is created.</summary>
internal sealed record BatchEntry(string CustomId, FakeReplyKind Kind, byte[]? ResultLine, TimeSpan ProcessingTime);

/// <summary>
/// One batch. Its state is derived lazily from the clock on every read, so it needs no timers and works with a fake
/// <see cref="TimeProvider"/>: a request is done <see cref="BatchEntry.ProcessingTime"/> after creation, the batch ends
/// when its slowest request is done, a cancel ends it <c>cancelDelay</c> later (requests not done by the cancel become
/// <c>canceled</c>), and expiry ends it at <c>expires_at</c> (requests not done become <c>expired</c>).
/// </summary>
internal sealed class FakeBatch(string id, long sequence, DateTimeOffset createdAt, DateTimeOffset expiresAt, IReadOnlyList<BatchEntry> entries)
{
    private readonly Lock _lock = new();
    private string _status = "in_progress";
    private DateTimeOffset? _endedAt;
    private DateTimeOffset? _cancelInitiatedAt;
    private FakeReplyKind[]? _final;

    public string Id { get; } = id;

    public long Sequence { get; } = sequence;

    public IReadOnlyList<BatchEntry> Entries { get; } = entries;

    public bool Deleted { get; set; }

    /// <summary>Brings the state up to <paramref name="now"/> and returns a consistent snapshot.</summary>
    public BatchSnapshot Observe(DateTimeOffset now, TimeSpan cancelDelay)
    {
        lock (_lock)
        {
            Advance(now, cancelDelay);
            return Snapshot();
        }
    }

    /// <summary>The state as it is, without advancing it (a new batch is always reported <c>in_progress</c>).</summary>
    public BatchSnapshot Peek()
    {
        lock (_lock)
        {
            return Snapshot();
        }
    }

    /// <summary>Starts a cancel (in_progress → canceling); a batch that is canceling or ended is left as it is.</summary>
    public BatchSnapshot Cancel(DateTimeOffset now, TimeSpan cancelDelay)
    {
        lock (_lock)
        {
            Advance(now, cancelDelay);
            if (_status == "in_progress")
            {
                _status = "canceling";
                _cancelInitiatedAt = now;
            }

            return Snapshot();
        }
    }

    private void Advance(DateTimeOffset now, TimeSpan cancelDelay)
    {
        if (_status == "ended")
        {
            return;
        }

        if (_status == "canceling")
        {
            var cancelAt = _cancelInitiatedAt!.Value;
            var end = cancelDelay == Timeout.InfiniteTimeSpan ? DateTimeOffset.MaxValue : cancelAt + cancelDelay;
            if (end > expiresAt)
            {
                end = expiresAt;
            }

            if (now >= end)
            {
                End(end, cancelAt, FakeReplyKind.Canceled);
            }

            return;
        }

        var naturalEnd = createdAt;
        foreach (var entry in Entries)
        {
            var done = DoneAt(entry);
            if (done > naturalEnd)
            {
                naturalEnd = done;
            }
        }

        if (naturalEnd <= expiresAt)
        {
            if (now >= naturalEnd)
            {
                End(naturalEnd, naturalEnd, FakeReplyKind.Canceled);
            }
        }
        else if (now >= expiresAt)
        {
            End(expiresAt, expiresAt, FakeReplyKind.Expired);
        }
    }

    private void End(DateTimeOffset endedAt, DateTimeOffset cutoff, FakeReplyKind unfinished)
    {
        _final = new FakeReplyKind[Entries.Count];
        for (var i = 0; i < Entries.Count; i++)
        {
            var entry = Entries[i];
            _final[i] = entry.Kind is FakeReplyKind.Message or FakeReplyKind.Error && DoneAt(entry) > cutoff ? unfinished : entry.Kind;
        }

        _status = "ended";
        _endedAt = endedAt;
    }

    private DateTimeOffset DoneAt(BatchEntry entry) =>
        entry.ProcessingTime == Timeout.InfiniteTimeSpan || entry.ProcessingTime >= DateTimeOffset.MaxValue - createdAt
            ? DateTimeOffset.MaxValue
            : createdAt + entry.ProcessingTime;

    private BatchSnapshot Snapshot() => new(Id, _status, createdAt, expiresAt, _endedAt, _cancelInitiatedAt, Entries, _final);
}

/// <summary>A consistent view of a batch at one moment.</summary>
internal sealed record BatchSnapshot(
    string Id,
    string Status,
    DateTimeOffset CreatedAt,
    DateTimeOffset ExpiresAt,
    DateTimeOffset? EndedAt,
    DateTimeOffset? CancelInitiatedAt,
    IReadOnlyList<BatchEntry> Entries,
    IReadOnlyList<FakeReplyKind>? FinalKinds);

/// <summary>The server's batches.</summary>
internal sealed class BatchStore(TimeProvider timeProvider, TimeSpan processingDelay, TimeSpan cancelDelay, TimeSpan expiration)
{
    private readonly ConcurrentDictionary<string, FakeBatch> _batches = new(StringComparer.Ordinal);
    private long _sequence;

    public TimeSpan ProcessingDelay { get; } = processingDelay;

    public TimeSpan CancelDelay { get; } = cancelDelay;

    public DateTimeOffset Now => timeProvider.GetUtcNow();

    public FakeBatch Add(IReadOnlyList<BatchEntry> entries, DateTimeOffset createdAt)
    {
        var batch = new FakeBatch(Ids.Batch(), Interlocked.Increment(ref _sequence), createdAt, createdAt + expiration, entries);
        _batches[batch.Id] = batch;
        return batch;
    }

    public FakeBatch? Find(string id) => _batches.TryGetValue(id, out var batch) && !batch.Deleted ? batch : null;

    public void Remove(FakeBatch batch)
    {
        batch.Deleted = true;
        _batches.TryRemove(batch.Id, out _);
    }

    /// <summary>All batches, newest first, as the list endpoint orders them.</summary>
    public List<FakeBatch> NewestFirst() => _batches.Values.Where(b => !b.Deleted).OrderByDescending(b => b.Sequence).ToList();

    public static void WriteBatch(Utf8JsonWriter writer, BatchSnapshot batch, string baseUrl)
    {
        writer.WriteStartObject();
        writer.WriteString("id", batch.Id);
        writer.WriteString("type", "message_batch");
        writer.WriteString("processing_status", batch.Status);
        writer.WriteStartObject("request_counts");
        int processing = 0, succeeded = 0, errored = 0, canceled = 0, expired = 0;
        if (batch.FinalKinds is null)
        {
            processing = batch.Entries.Count;
        }
        else
        {
            foreach (var kind in batch.FinalKinds)
            {
                switch (kind)
                {
                    case FakeReplyKind.Error:
                        errored++;
                        break;
                    case FakeReplyKind.Canceled:
                        canceled++;
                        break;
                    case FakeReplyKind.Expired:
                        expired++;
                        break;
                    default:
                        succeeded++;
                        break;
                }
            }
        }

        writer.WriteNumber("processing", processing);
        writer.WriteNumber("succeeded", succeeded);
        writer.WriteNumber("errored", errored);
        writer.WriteNumber("canceled", canceled);
        writer.WriteNumber("expired", expired);
        writer.WriteEndObject();
        WriteTime(writer, "ended_at", batch.EndedAt);
        WriteTime(writer, "created_at", batch.CreatedAt);
        WriteTime(writer, "expires_at", batch.ExpiresAt);
        writer.WriteNull("archived_at");
        WriteTime(writer, "cancel_initiated_at", batch.CancelInitiatedAt);
        if (batch.Status == "ended")
        {
            writer.WriteString("results_url", $"{baseUrl}/v1/messages/batches/{batch.Id}/results");
        }
        else
        {
            writer.WriteNull("results_url");
        }

        writer.WriteEndObject();
    }

    private static void WriteTime(Utf8JsonWriter writer, string name, DateTimeOffset? value)
    {
        if (value is { } time)
        {
            writer.WriteString(name, time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", System.Globalization.CultureInfo.InvariantCulture));
        }
        else
        {
            writer.WriteNull(name);
        }
    }
}
