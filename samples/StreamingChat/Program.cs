// Streaming a run to the browser with server-sent events.
//
//   GET  /                      a chat page (EventSource)
//   POST /chat                  {"sessionId": null | "…", "message": "…"} → {"sessionId", "runId"}
//   GET  /runs/{id}/events      text/event-stream of the run's events; `id:` is the event sequence, so a reconnecting
//                               EventSource (Last-Event-ID header) or ?after=N resumes exactly where it stopped
//
// The web process never starts its AgentPgClient: it only creates runs and watches them. The runs are processed by a
// worker in another process — this program started with --worker, which the web process launches for you.
//
//   ./build.sh sample StreamingChat [--smoke]      on a throwaway PostgreSQL, then open http://127.0.0.1:5080
//   dotnet run --project samples/StreamingChat -- --connection "Host=…;Username=…" [--schema public] [--urls …] [--smoke]
//
// (--connection defaults to AGENTPG_CONNECTION.)
// Without ANTHROPIC_API_KEY both processes use the bundled fake Claude (a slow, deterministic stream). --smoke posts a
// message, drops the event stream after a few deltas, resumes it with Last-Event-ID, checks that the text is complete and
// exits (0 on success).

using System.Diagnostics;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using AgentPg;
using AgentPg.Testing;
using Npgsql;

var settings = ParseArguments(args);
var connectionString = settings.GetValueOrDefault("connection") ?? Environment.GetEnvironmentVariable("AGENTPG_CONNECTION");
if (string.IsNullOrEmpty(connectionString))
{
    Console.Error.WriteLine("usage: StreamingChat --connection <connection string> [--schema public] [--smoke]");
    return 2;
}

var schema = settings.GetValueOrDefault("schema", "public");
await using var dataSource = NpgsqlDataSource.Create(connectionString);
if (settings.ContainsKey("worker"))
{
    return await RunWorkerAsync(dataSource, schema, settings);
}

try
{
    await new AgentPgMigrator(dataSource, schema).MigrateAsync();
}
catch (NpgsqlException ex)
{
    // The first statement that needs the database: say what to do instead of a stack trace.
    Console.Error.WriteLine($"StreamingChat failed: PostgreSQL error: {ex.Message}");
    Console.Error.WriteLine("Is PostgreSQL running? Set AGENTPG_CONNECTION (or --connection), or use ./build.sh sample StreamingChat for a throwaway database.");
    return 1;
}

// The fake Claude lives in the web process; the worker process calls it over HTTP like the real API.
var apiKey = Environment.GetEnvironmentVariable("ANTHROPIC_API_KEY");
await using var fakeClaude = string.IsNullOrEmpty(apiKey)
    ? await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions
    {
        Responder = request => FakeReply.Text(Answer(request.LastUserText)) with { EventDelay = TimeSpan.FromMilliseconds(40) },
    })
    : null;
using var worker = StartWorker(connectionString, schema, fakeClaude);
// The worker stops when its standard input closes: when this process ends, however it ends.
AppDomain.CurrentDomain.ProcessExit += (_, _) => StopWorker(worker);

await using var agentpg = AgentPgClient.Create(dataSource, new AgentPgOptions { Schema = schema });
var agent = await agentpg.GetOrCreateAgentAsync(new AgentDefinition
{
    Name = "streaming_chat",
    Model = "claude-sonnet-4-5",
    SystemPrompt = "You are a friendly assistant. Answer in a few sentences.",
    Tools = [],
});

var builder = WebApplication.CreateSlimBuilder();
builder.WebHost.UseUrls(settings.GetValueOrDefault("urls", settings.ContainsKey("smoke") ? "http://127.0.0.1:0" : "http://127.0.0.1:5080"));
builder.Logging.SetMinimumLevel(LogLevel.Warning);
var app = builder.Build();

app.MapGet("/", () => Results.Content(Page, "text/html; charset=utf-8"));

app.MapPost("/chat", async (ChatRequest request, CancellationToken cancellationToken) =>
{
    if (string.IsNullOrWhiteSpace(request.Message))
    {
        return Results.BadRequest(new { error = "message is required" });
    }

    var sessionId = request.SessionId ?? await agentpg.NewSessionAsync(cancellationToken: cancellationToken);
    var runId = await agentpg.RunFastAsync(sessionId, agent.Id, request.Message, cancellationToken: cancellationToken);
    return Results.Ok(new ChatStarted(sessionId, runId));
});

app.MapGet("/runs/{id:guid}/events", async (Guid id, long? after, HttpContext http) =>
{
    // EventSource resends the last `id:` it received as Last-Event-ID when it reconnects.
    var resumeFrom = long.TryParse(http.Request.Headers["Last-Event-ID"], out var lastEventId) ? lastEventId : after ?? 0;
    // Deltas are published only while a run is watched, and the worker learns of a watch a moment after it starts: an answer
    // streamed before then has no deltas (or only its end). The stored answer fills in what they did not bring, as a "text"
    // event with its message's sequence. Read from the start even when resuming: the deltas the browser already received
    // decide what is missing. The events are shared with every watcher of the run, so this reads nothing more.
    var streamed = new StreamedText();
    try
    {
        await using var events = agentpg.WatchRunAsync(id, 0, http.RequestAborted).GetAsyncEnumerator();
        bool more;
        try
        {
            more = await events.MoveNextAsync();
        }
        catch (AgentPgException ex) when (ex.Code == AgentPgErrorCode.RunNotFound)
        {
            http.Response.StatusCode = StatusCodes.Status404NotFound;
            return;
        }

        // The headers go out now, so the browser knows the stream is open before the first text arrives.
        http.Response.ContentType = "text/event-stream";
        http.Response.Headers.CacheControl = "no-cache";
        await http.Response.StartAsync(http.RequestAborted);
        for (; more; more = await events.MoveNextAsync())
        {
            var e = events.Current;
            var (type, data) = e switch
            {
                TextDeltaEvent { Depth: 0 } d => ("text", JsonSerializer.Serialize(new { text = streamed.Add(d), iteration = d.IterationNumber })),
                IterationStartedEvent { Depth: 0 } i => ("iteration", JsonSerializer.Serialize(new { iteration = streamed.Start(i.IterationNumber) })),
                MessageStoredEvent { Depth: 0, Message: { Role: MessageRole.Assistant } m } when streamed.Missing(m) is { Length: > 0 } rest
                    => ("text", JsonSerializer.Serialize(new { text = rest, iteration = streamed.Iteration })),
                ToolCallStartedEvent t => ("tool", JsonSerializer.Serialize(new { name = t.ToolName })),
                RunFinishedEvent f when f.RunId == id => ("done", JsonSerializer.Serialize(new { state = f.State.ToString(), text = f.Response?.Text, error = f.Error })),
                _ => (null, null),
            };
            if (type is null || e.Sequence <= resumeFrom)
            {
                continue;
            }

            await http.Response.WriteAsync($"id: {e.Sequence}\nevent: {type}\ndata: {data}\n\n", http.RequestAborted);
            await http.Response.Body.FlushAsync(http.RequestAborted);
        }
    }
    catch (OperationCanceledException) when (http.RequestAborted.IsCancellationRequested)
    {
        // The browser went away; it resumes with Last-Event-ID.
    }
});

await app.StartAsync();
var address = app.Urls.First();
Console.WriteLine($"StreamingChat listening on {address} (worker process {worker.Id})");
if (!settings.ContainsKey("smoke"))
{
    await app.WaitForShutdownAsync();
    StopWorker(worker);
    return 0;
}

var ok = await SmokeAsync(address);
await app.StopAsync();
StopWorker(worker);
return ok ? 0 : 1;

static void StopWorker(Process worker)
{
    try
    {
        if (!worker.HasExited)
        {
            worker.StandardInput.Close();
            worker.WaitForExit(TimeSpan.FromSeconds(30));
        }
    }
    catch (InvalidOperationException)
    {
        // Already stopped and disposed.
    }
}

static async Task<bool> SmokeAsync(string address)
{
    using var http = new HttpClient { BaseAddress = new Uri(address), Timeout = TimeSpan.FromSeconds(60) };
    var started = (await (await http.PostAsJsonAsync("/chat", new ChatRequest(null, "Tell me about PostgreSQL"))).Content.ReadFromJsonAsync<ChatStarted>())!;
    var text = new StringBuilder();
    string? final = null;
    string? lastId = null;
    for (var connection = 1; final is null && connection <= 10; connection++)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"/runs/{started.RunId}/events");
        if (lastId is not null)
        {
            request.Headers.Add("Last-Event-ID", lastId);
        }

        using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
        var deltas = 0;
        string? id = null, type = null;
        while (await reader.ReadLineAsync() is { } line)
        {
            if (line.StartsWith("id: ", StringComparison.Ordinal)) { id = line[4..]; }
            else if (line.StartsWith("event: ", StringComparison.Ordinal)) { type = line[7..]; }
            else if (line.StartsWith("data: ", StringComparison.Ordinal))
            {
                using var data = JsonDocument.Parse(line[6..]);
                lastId = id;
                if (type == "text") { text.Append(data.RootElement.GetProperty("text").GetString()); deltas++; }
                if (type == "done") { final = data.RootElement.GetProperty("text").GetString(); break; }
                // The first connection drops after three deltas, as a flaky network would.
                if (connection == 1 && deltas == 3) { break; }
            }
        }

        Console.WriteLine($"connection {connection}: resumed after event {lastId ?? "0"}");
    }

    Console.WriteLine($"answer: {final}");
    var complete = final is not null && text.ToString() == final;
    Console.WriteLine(complete ? "OK: the streamed text equals the stored answer" : $"MISMATCH: streamed '{text}'");
    return complete;
}

static Process StartWorker(string connectionString, string schema, FakeClaudeServer? fakeClaude)
{
    // This same program in worker mode: `dotnet StreamingChat.dll --worker …` or the apphost directly.
    var self = Environment.ProcessPath!;
    var start = new ProcessStartInfo(self) { UseShellExecute = false, RedirectStandardInput = true };
    if (Path.GetFileNameWithoutExtension(self) == "dotnet")
    {
        start.ArgumentList.Add(typeof(ChatRequest).Assembly.Location);
    }

    foreach (var argument in (string[])["--worker", "--stop-with-input", "--connection", connectionString, "--schema", schema])
    {
        start.ArgumentList.Add(argument);
    }

    if (fakeClaude is not null)
    {
        start.ArgumentList.Add("--claude-url");
        start.ArgumentList.Add(fakeClaude.BaseUrl);
        start.ArgumentList.Add("--api-key");
        start.ArgumentList.Add(fakeClaude.ApiKey);
    }

    return Process.Start(start)!;
}

static async Task<int> RunWorkerAsync(NpgsqlDataSource dataSource, string schema, Dictionary<string, string> settings)
{
    await using var client = AgentPgClient.Create(dataSource, new AgentPgOptions
    {
        Schema = schema,
        ApiKey = settings.GetValueOrDefault("api-key"),
        BaseUrl = settings.GetValueOrDefault("claude-url"),
        InstanceName = "streaming-chat-worker",
    });
    await client.StartAsync();
    Console.WriteLine($"worker {client.InstanceId} started");
    using var stop = new CancellationTokenSource();
    Console.CancelKeyPress += (_, e) => { e.Cancel = true; stop.Cancel(); };
    AppDomain.CurrentDomain.ProcessExit += (_, _) =>
    {
        try
        {
            stop.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // Stopped already.
        }
    };
    if (settings.ContainsKey("stop-with-input"))
    {
        // Started by the web process: its end closes this pipe.
        _ = Task.Run(async () =>
        {
            await Console.In.ReadToEndAsync();
            await stop.CancelAsync();
        });
    }

    try
    {
        await Task.Delay(Timeout.Infinite, stop.Token);
    }
    catch (OperationCanceledException)
    {
    }

    await client.StopAsync();
    return 0;
}

static string Answer(string? question)
    => $"You asked: \"{question}\". PostgreSQL stores this conversation, a worker in another process streams the answer, " +
       "and the browser receives it through server-sent events. Reload the page or drop the connection: the stream resumes " +
       "from the last event it received, with nothing lost and nothing repeated.";

static Dictionary<string, string> ParseArguments(string[] args)
{
    var result = new Dictionary<string, string>(StringComparer.Ordinal);
    for (var i = 0; i < args.Length; i++)
    {
        if (args[i].StartsWith("--", StringComparison.Ordinal))
        {
            var name = args[i][2..];
            result[name] = i + 1 < args.Length && !args[i + 1].StartsWith("--", StringComparison.Ordinal) ? args[++i] : "true";
        }
    }

    return result;
}

internal sealed record ChatRequest(Guid? SessionId, string Message);

/// <summary>The text deltas of the root run's iteration in progress, per content block, to tell which part of its stored answer
/// they did not bring.</summary>
internal sealed class StreamedText
{
    private readonly Dictionary<int, StringBuilder> _blocks = [];

    public int Iteration { get; private set; }

    /// <summary>A model call starts; a number seen again is a retried call, whose deltas start over.</summary>
    public int Start(int iteration)
    {
        Iteration = iteration;
        _blocks.Clear();
        return iteration;
    }

    public string Add(TextDeltaEvent delta)
    {
        if (delta.IterationNumber != Iteration)
        {
            Start(delta.IterationNumber);
        }

        if (!_blocks.TryGetValue(delta.BlockIndex, out var block))
        {
            _blocks[delta.BlockIndex] = block = new StringBuilder();
        }

        block.Append(delta.Text);
        return delta.Text;
    }

    /// <summary>The part of the stored answer's text blocks that their deltas did not bring (deltas are a prefix of their block;
    /// text that is not is not repeated).</summary>
    public string Missing(Message message)
    {
        var missing = new StringBuilder();
        for (var i = 0; i < message.Content.Count; i++)
        {
            if (message.Content[i] is { Type: ContentTypes.Text, Text: { } text })
            {
                var received = _blocks.TryGetValue(i, out var block) ? block.ToString() : "";
                if (received.Length < text.Length && text.StartsWith(received, StringComparison.Ordinal))
                {
                    missing.Append(text, received.Length, text.Length - received.Length);
                }
            }
        }

        _blocks.Clear();
        return missing.ToString();
    }
}

internal sealed record ChatStarted(Guid SessionId, Guid RunId);

internal partial class Program
{
    private const string Page = """
        <!doctype html>
        <html lang="en"><head><meta charset="utf-8"><title>AgentPg streaming chat</title>
        <style>body{font-family:system-ui;max-width:40rem;margin:2rem auto} #log p{white-space:pre-wrap} .me{color:#555}</style></head>
        <body>
        <h1>AgentPg streaming chat</h1>
        <div id="log"></div>
        <form id="f"><input id="m" size="50" autocomplete="off" placeholder="Say something"> <button>Send</button></form>
        <script>
        let sessionId = null;
        const log = document.getElementById('log');
        document.getElementById('f').onsubmit = async e => {
          e.preventDefault();
          const message = document.getElementById('m').value; document.getElementById('m').value = '';
          log.insertAdjacentHTML('beforeend', '<p class="me"></p>'); log.lastChild.textContent = message;
          const r = await fetch('/chat', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({sessionId, message})});
          const started = await r.json(); sessionId = started.sessionId;
          const p = document.createElement('p'); log.appendChild(p);
          // EventSource reconnects by itself and sends Last-Event-ID: the text continues where it stopped.
          const source = new EventSource('/runs/' + started.runId + '/events');
          source.addEventListener('iteration', () => { p.textContent = ''; });
          source.addEventListener('text', m => { p.textContent += JSON.parse(m.data).text; });
          source.addEventListener('done', m => { const d = JSON.parse(m.data); if (d.text) p.textContent = d.text; else p.textContent += ' [' + d.error + ']'; source.close(); });
        };
        </script>
        </body></html>
        """;
}
