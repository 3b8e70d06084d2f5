using System.Net.Http.Json;
using System.Text.Json;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

/// <summary>samples/StreamingChat over HTTP: its web process (which never starts its client) and the worker process it
/// launches, streaming a run as server-sent events.</summary>
public sealed class StreamingChatSampleTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private sealed record Sse(long Id, string Type, JsonElement Data);

    private sealed record Started(Guid SessionId, Guid RunId);

    /// <summary>Reads server-sent events until <paramref name="stop"/> says so or the server ends the stream.</summary>
    private static async Task<List<Sse>> ReadAsync(HttpClient http, Guid runId, string? lastEventId, Func<List<Sse>, bool>? stop = null)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/runs/{runId}/events");
        if (lastEventId is not null)
        {
            request.Headers.Add("Last-Event-ID", lastEventId);
        }

        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var events = new List<Sse>();
        string? id = null, type = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("id: ", StringComparison.Ordinal))
            {
                id = line[4..];
            }
            else if (line.StartsWith("event: ", StringComparison.Ordinal))
            {
                type = line[7..];
            }
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                events.Add(new Sse(long.Parse(id!, System.Globalization.CultureInfo.InvariantCulture), type!, JsonDocument.Parse(line[6..]).RootElement.Clone()));
                if (stop?.Invoke(events) == true)
                {
                    break; // dropping the connection, as a flaky network would
                }
            }
        }

        return events;
    }

    private static string Text(IEnumerable<Sse> events) => string.Concat(events.Where(e => e.Type == "text").Select(e => e.Data.GetProperty("text").GetString()));

    [DatabaseFact]
    public async Task StreamingChat_ReconnectWithLastEventId_GetsExactlyTheRemainder()
    {
        await using var web = await WorkerProcess.StartSampleAsync("StreamingChat", "StreamingChat listening on ", new Dictionary<string, string>
        {
            ["connection"] = TestDatabase.ConnectionString,
            ["schema"] = db.Schema,
            ["urls"] = "http://127.0.0.1:0",
        }, TimeSpan.FromSeconds(120));
        using var http = new HttpClient { BaseAddress = new Uri(web.InstanceId.Split(' ')[0]), Timeout = TimeSpan.FromSeconds(120) };

        var posted = await http.PostAsJsonAsync("/chat", new { message = "Tell me about PostgreSQL" });
        posted.EnsureSuccessStatusCode();
        var started = (await posted.Content.ReadFromJsonAsync<Started>())!;

        // The first connection drops after two events: the iteration and the first text (a delta, or, when the worker learned of
        // the watch only after the answer had streamed, the part of the stored answer that no delta brought); the second
        // resumes with the last id it saw.
        var first = await ReadAsync(http, started.RunId, null, events => events.Count == 2);
        Assert.Equal(2, first.Count);
        var rest = await ReadAsync(http, started.RunId, first[^1].Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
        var everything = await ReadAsync(http, started.RunId, null);

        Assert.Equal(everything.Select(e => e.Id), first.Concat(rest).Select(e => e.Id));
        Assert.All(everything.Zip(everything.Skip(1)), p => Assert.True(p.First.Id < p.Second.Id, "ids strictly increase"));
        var done = Assert.Single(rest, e => e.Type == "done");
        Assert.Same(rest[^1], done);
        Assert.Equal("Completed", done.Data.GetProperty("state").GetString());
        var answer = done.Data.GetProperty("text").GetString();
        Assert.Contains("Tell me about PostgreSQL", answer, StringComparison.Ordinal);
        Assert.Equal(answer, Text(first) + Text(rest));

        // The run was processed by the sample's worker process, not by the web process, which never started its client.
        Assert.Equal(1L, await db.ScalarAsync<long>(
            "SELECT count(DISTINCT i.instance_id) FROM {schema}.agentpg_iterations i JOIN {schema}.agentpg_instances n ON n.id = i.instance_id " +
            "WHERE i.run_id = $1 AND n.name = 'streaming-chat-worker'", started.RunId));

        var missing = await http.GetAsync($"/runs/{Guid.NewGuid()}/events");
        Assert.Equal(System.Net.HttpStatusCode.NotFound, missing.StatusCode);
    }
}
