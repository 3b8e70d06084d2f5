using System.Buffers;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;

namespace AgentPg.Testing;

/// <summary>Token counts of one answer's <c>usage</c>.</summary>
internal readonly record struct UsageCounts(long Input, long CacheCreation, long CacheRead, long Creation5m, long Creation1h, long Output)
{
    /// <summary><c>server_tool_use.web_search_requests</c>; with <see cref="WebFetchRequests"/>, written only when one is not 0.</summary>
    public long WebSearchRequests { get; init; }

    /// <summary><c>server_tool_use.web_fetch_requests</c>.</summary>
    public long WebFetchRequests { get; init; }
}

/// <summary>
/// A prefix cache keyed on cache_control breakpoints, as Claude's prompt caching documents it: the key of a breakpoint is the model plus a hash of
/// every unit (tools → system → messages) up to and including it, with cache_control itself left out. A hit reports the
/// prefix as <c>cache_read_input_tokens</c>; breakpoints after the hit whose prefix reaches the minimum size are written
/// and reported as <c>cache_creation_input_tokens</c> (split by TTL); the rest is <c>input_tokens</c>.
/// </summary>
internal sealed class PromptCache(TimeProvider timeProvider, int minimumTokens)
{
    private static readonly TimeSpan s_fiveMinutes = TimeSpan.FromMinutes(5);
    private static readonly TimeSpan s_oneHour = TimeSpan.FromHours(1);

    private readonly ConcurrentDictionary<string, DateTimeOffset> _entries = new(StringComparer.Ordinal);

    public UsageCounts Apply(string model, PromptAnalysis prompt)
    {
        if (!prompt.HasBreakpoints)
        {
            return new UsageCounts(prompt.TotalTokens, 0, 0, 0, 0, 0);
        }

        var units = prompt.Units;
        var now = timeProvider.GetUtcNow();
        var breakpoints = new List<(int Index, long Prefix, string Key, string Ttl)>();
        using (var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256))
        {
            hash.AppendData(Encoding.UTF8.GetBytes(model));
            long prefix = 0;
            var buffer = new ArrayBufferWriter<byte>();
            for (var i = 0; i < units.Count; i++)
            {
                var unit = units[i];
                prefix += unit.Tokens;
                buffer.ResetWrittenCount();
                WriteCanonical(buffer, unit);
                hash.AppendData(buffer.WrittenSpan);
                if (unit.CacheTtl is { } ttl)
                {
                    breakpoints.Add((i, prefix, model + ":" + Convert.ToBase64String(hash.GetCurrentHash()), ttl));
                }
            }
        }

        long read = 0;
        var readIndex = -1;
        for (var b = breakpoints.Count - 1; b >= 0; b--)
        {
            var (index, prefix, key, ttl) = breakpoints[b];
            if (_entries.TryGetValue(key, out var expiresAt) && expiresAt > now)
            {
                read = prefix;
                readIndex = index;
                _entries[key] = now + Lifetime(ttl);
                break;
            }
        }

        long covered = read, creation5m = 0, creation1h = 0;
        foreach (var (index, prefix, key, ttl) in breakpoints)
        {
            if (index <= readIndex || prefix < minimumTokens)
            {
                continue;
            }

            if (ttl == "1h")
            {
                creation1h += prefix - covered;
            }
            else
            {
                creation5m += prefix - covered;
            }

            covered = prefix;
            _entries[key] = now + Lifetime(ttl);
        }

        var creation = creation5m + creation1h;
        return new UsageCounts(prompt.TotalTokens - read - creation, creation, read, creation5m, creation1h, 0);
    }

    private static TimeSpan Lifetime(string ttl) => ttl == "1h" ? s_oneHour : s_fiveMinutes;

    private static void WriteCanonical(ArrayBufferWriter<byte> buffer, PromptUnit unit)
    {
        using var writer = new Utf8JsonWriter(buffer);
        writer.WriteStartArray();
        writer.WriteStringValue(unit.Marker);
        if (unit.Element.ValueKind == JsonValueKind.Object)
        {
            writer.WriteStartObject();
            foreach (var property in unit.Element.EnumerateObject())
            {
                if (property.Name != "cache_control")
                {
                    property.WriteTo(writer);
                }
            }

            writer.WriteEndObject();
        }
        else
        {
            unit.Element.WriteTo(writer);
        }

        writer.WriteEndArray();
    }
}
