using System.Diagnostics;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Mcp;
using AgentPg.McpTestServer;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Mcp;

/// <summary>MCP servers' tools as agent tools, against a real C# MCP server over stdio and Streamable HTTP.</summary>
public sealed class McpToolTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    /// <summary>Claude calls <paramref name="tool"/> with <paramref name="input"/>, then answers with the tool result it got.</summary>
    private static void ScriptOneCall(FakeClaudeServer claude, string tool, object input)
        => claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text($"result: {request.ToolResults[0].Content} error={request.ToolResults[0].IsError}")
            : FakeReply.ToolUse(tool, input));

    private async Task<Response> RunOneCallAsync(Harness h, string tool, object input)
    {
        var agent = await h.AgentAsync(a => a with { Tools = null });
        ScriptOneCall(h.Claude, tool, input);
        return await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "use the tool");
    }

    private Task<long> InstanceHasToolAsync(AgentPgClient client, string tool) => db.ScalarAsync<long>(
        "SELECT count(*) FROM {schema}.agentpg_instance_tools WHERE instance_id = $1 AND tool_name = $2", client.InstanceId, tool);

    internal static ToolContext Context() => new(Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), Guid.NewGuid(), "toolu_test", 1,
        new Dictionary<string, JsonElement>(), null);

    private static JsonElement Json(string json) => JsonDocument.Parse(json).RootElement.Clone();

    [DatabaseFact]
    public async Task Stdio_ToolsAreDiscoveredAndRegisteredOnTheInstance_AndARunCallsOne()
    {
        using var server = new StdioTestServer();
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(server.Options());

        Assert.True(source.IsConnected);
        Assert.Equal("agentpg-test-server 1.0.0", source.ServerInfo);
        Assert.Contains("test__echo", source.ToolNames);
        Assert.Contains("test__lookup", source.ToolNames);
        Assert.Equal("Echoes a message back", h.Client.GetTool("test__echo")!.Description);
        await Eventually.TrueAsync(async () => await InstanceHasToolAsync(h.Client, "test__echo") == 1, "the MCP tool is registered on the instance in the database");

        var response = await RunOneCallAsync(h, "test__echo", new { message = "hello" });

        Assert.Equal("result: Echo: hello error=False", response.Text);
        Assert.Contains("called echo {\"message\":\"hello\"}", server.Events);
    }

    [DatabaseFact]
    public async Task StreamableHttp_WithStaticAndPerRequestHeaders_ToolsAreDiscovered_AndARunCallsOne()
    {
        await using var server = await HttpTestServer.StartAsync(new Dictionary<string, string> { ["X-Api-Key"] = "static-key", ["Authorization"] = "Bearer t2" });
        await using var h = await Harness.StartAsync(db);
        var tokens = 0;
        var source = await h.Client.AddMcpServerAsync(new McpServerOptions
        {
            Name = "web",
            Endpoint = server.Endpoint,
            Headers = new Dictionary<string, string> { ["X-Api-Key"] = "static-key", ["Authorization"] = "Bearer static" },
            HeaderProvider = _ => ValueTask.FromResult<IReadOnlyDictionary<string, string>>(
                new Dictionary<string, string> { ["Authorization"] = "Bearer t" + Math.Min(2, Interlocked.Increment(ref tokens) + 1) }),
        });

        Assert.Contains("web__add", source.ToolNames);
        var response = await RunOneCallAsync(h, "web__add", new { a = 2, b = 3.5 });

        Assert.Equal("result: 5.5 error=False", response.Text);
        Assert.Contains(server.Server.Events, e => e.StartsWith("called add", StringComparison.Ordinal));
        Assert.True(tokens >= 2, "the header callback runs for every request");
        Assert.DoesNotContain("Bearer static", server.SeenAuthorization);
    }

    [DatabaseFact]
    public async Task SchemaFidelity_ClaudeReceivesTheServersSchemaUnchanged_AndInvalidInputNeverReachesTheServer()
    {
        using var server = new StdioTestServer();
        await using var h = await Harness.StartAsync(db);
        await h.Client.AddMcpServerAsync(server.Options());
        var agent = await h.AgentAsync(a => a with { Tools = null });
        ScriptOneCall(h.Claude, "test__lookup", new { id = true, mode = "slow", filter = new { since = "2026-01-01", tags = new[] { "A" }, extra = 1 } });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "look it up");

        var tools = h.Claude.Requests.First(r => r.IsMessagesCall).Body!.Value.GetProperty("tools");
        var lookup = tools.EnumerateArray().Single(t => t.GetProperty("name").GetString() == "test__lookup");
        Assert.True(JsonNode.DeepEquals(JsonNode.Parse(TestServer.LookupSchema), JsonNode.Parse(lookup.GetProperty("input_schema").GetRawText())),
            "input_schema sent to Claude: " + lookup.GetProperty("input_schema").GetRawText());
        Assert.StartsWith("result: Invalid input for tool 'test__lookup': ", response.Text, StringComparison.Ordinal);
        Assert.Contains("/properties/id/anyOf", response.Text, StringComparison.Ordinal);
        Assert.Contains("'mode'", response.Text, StringComparison.Ordinal);
        Assert.Contains("'filter.tags.0'", response.Text, StringComparison.Ordinal);
        Assert.Contains("'filter.extra'", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
        Assert.DoesNotContain(server.Events, e => e.StartsWith("called lookup", StringComparison.Ordinal));

        // Valid input goes through.
        ScriptOneCall(h.Claude, "test__lookup", new { id = 42, mode = 3, filter = new { since = "2026-01-01", tags = new[] { "ab" } } });
        var valid = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "look it up");
        Assert.Equal("result: looked up 42 error=False", valid.Text);
    }

    [DatabaseFact]
    public async Task Results_ErrorsAndNonTextContent_MapToToolResults()
    {
        await using var server = await HttpTestServer.StartAsync();
        await using var h = await Harness.StartAsync(db);
        await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint });

        var refused = await RunOneCallAsync(h, "web__bad_params", new { });
        Assert.StartsWith("result: tool discarded: MCP tool 'bad_params' refused its input: ", refused.Text, StringComparison.Ordinal);
        Assert.Single(server.Server.Events, e => e.StartsWith("called bad_params", StringComparison.Ordinal));
    }

    /// <summary>Runs one call of <paramref name="tool"/> and returns the tool_result Claude received.</summary>
    private static async Task<(Response Response, FakeToolResult Result)> CallAndCaptureAsync(Harness h, string tool)
    {
        var agent = await h.AgentAsync(a => a with { Tools = null });
        FakeToolResult? received = null;
        h.Claude.Respond(request =>
        {
            if (request.ToolResults.Count == 0)
            {
                return FakeReply.ToolUse(tool, new { });
            }

            received = request.ToolResults[0];
            return FakeReply.Text("done");
        });
        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "use the tool");
        return (response, received ?? throw new InvalidOperationException("Claude received no tool_result"));
    }

    [DatabaseFact]
    public async Task IsErrorResult_ReachesClaudeAsAnIsErrorToolResultWithTheServersContent_NotRetried()
    {
        await using var server = await HttpTestServer.StartAsync();
        await using var h = await Harness.StartAsync(db);
        await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint });

        var (response, result) = await CallAndCaptureAsync(h, "web__fail");

        Assert.True(result.IsError);
        Assert.Equal(["text", "image"], result.Blocks.Select(b => b.GetProperty("type").GetString()));
        Assert.Equal("the widget is broken", result.Blocks[0].GetProperty("text").GetString());
        Assert.Equal(Convert.ToBase64String(TestServer.Png), result.Blocks[1].GetProperty("source").GetProperty("data").GetString());
        Assert.DoesNotContain("tool discarded", result.Json.GetRawText(), StringComparison.Ordinal);
        Assert.Single(server.Server.Events, e => e.StartsWith("called fail", StringComparison.Ordinal));
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Failed, call.State);
        Assert.True(call.IsError);
        Assert.StartsWith("the widget is broken", call.ErrorMessage, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task ImagesAndEmbeddedResources_ReachClaudeAsContentBlocks_TheRestIsDescribedInText()
    {
        using var server = new StdioTestServer();
        await using var h = await Harness.StartAsync(db);
        await h.Client.AddMcpServerAsync(server.Options());

        var (response, result) = await CallAndCaptureAsync(h, "test__picture");

        Assert.False(result.IsError);
        var blocks = result.Blocks.Select(b => b.GetProperty("type").GetString() switch
        {
            "text" => "text: " + b.GetProperty("text").GetString(),
            var type => $"{type}: {b.GetProperty("source").GetProperty("type").GetString()} {b.GetProperty("source").GetProperty("media_type").GetString()} "
                        + b.GetProperty("source").GetProperty("data").GetString(),
        }).ToList();
        Assert.Equal(
        [
            "text: a red dot",
            "image: base64 image/png " + Convert.ToBase64String(TestServer.Png),
            "text: [resource memo://1 (text/plain)]\nmemo text",
            "document: base64 application/pdf " + Convert.ToBase64String(TestServer.Pdf),
            "image: base64 image/gif " + Convert.ToBase64String(TestServer.Gif),
            "text: [content: file:///data.zip, application/zip, 4 bytes; not shown: Claude does not accept application/zip in a tool result]",
            "text: [image: image/svg+xml, 6 bytes; not shown: Claude accepts JPEG, PNG, GIF and WebP images]",
            "text: [audio: audio/wav, 3 bytes; not shown: Claude does not accept audio]",
            "text: [resource link: manual https://example.com/manual]",
        ], blocks);
        Assert.Equal("file:///report.pdf", result.Blocks[3].GetProperty("title").GetString());

        // The text of the result, and the blocks, are what the run reports and what the conversation stores.
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Completed, call.State);
        Assert.StartsWith("a red dot\n[image: image/png, 16 bytes]\n[resource memo://1 (text/plain)]\nmemo text\n[document: file:///report.pdf, application/pdf, 15 bytes]", call.Output, StringComparison.Ordinal);
        Assert.Equal(9, call.OutputBlocks.Count);
        Assert.Equal(ContentTypes.Image, call.OutputBlocks[1].Type);
        var stored = (await h.Client.GetMessagesAsync(response.Message!.SessionId)).SelectMany(m => m.Content).Single(b => b.Type == ContentTypes.ToolResult);
        Assert.Equal(call.Output, stored.ToolContent);
        Assert.Equal(["text", "image", "text", "document", "image", "text", "text", "text", "text"], stored.ToolContentBlocks.Select(b => b.Type));
    }

    [DatabaseFact]
    public async Task ServerProcessKilledMidSession_TheNextCallSnoozes_TheClientReconnects_AndTheRunCompletes()
    {
        using var server = new StdioTestServer();
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(server.Options());
        var echo = h.Client.GetTool("test__echo")!;
        var pid = int.Parse(await h.Client.GetTool("test__pid")!.ExecuteAsync(Context(), Json("{}"), CancellationToken.None), CultureInfo.InvariantCulture);

        using (var process = Process.GetProcessById(pid))
        {
            process.Kill();
        }

        await Eventually.TrueAsync(() => !source.IsConnected, "the source notices the server process is gone");
        var snooze = await Assert.ThrowsAsync<ToolSnoozeException>(() => echo.ExecuteAsync(Context(), Json("""{"message":"x"}"""), CancellationToken.None));
        Assert.Contains("MCP server 'test' is not connected", snooze.Message, StringComparison.Ordinal);

        // A run started now snoozes its call until the source has reconnected, then completes.
        var response = await RunOneCallAsync(h, "test__echo", new { message = "again" });

        Assert.Equal("result: Echo: again error=False", response.Text);
        Assert.True(source.IsConnected);
        var newPid = int.Parse(await h.Client.GetTool("test__pid")!.ExecuteAsync(Context(), Json("{}"), CancellationToken.None), CultureInfo.InvariantCulture);
        Assert.NotEqual(pid, newPid);
        Assert.Contains("test__echo", source.ToolNames);
    }

    [DatabaseFact]
    public async Task ServerProcessExitsDuringACall_TheCallIsAFailedAttempt_NotRepeatedWithoutEnd()
    {
        // The server may have done the call's work before it died: the call is an attempt like any failure (retried per
        // ToolRetry, then reported to Claude), not a snooze that would call it again after every reconnect, forever.
        using var server = new StdioTestServer();
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(server.Options());

        var response = await Eventually.WithinAsync(RunOneCallAsync(h, "test__crash", new { }), "the run whose MCP call kills the server", TimeSpan.FromSeconds(60));

        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
        Assert.Contains("connection lost", response.Text, StringComparison.Ordinal);
        Assert.Equal(2, server.Events.Count(e => e.StartsWith("called crash", StringComparison.Ordinal)));
        var call = Assert.Single(response.ToolCalls);
        Assert.Equal(ToolExecutionState.Failed, call.State);
        await Eventually.TrueAsync(() => source.IsConnected, "the source reconnects to a new server process");
    }

    [DatabaseFact]
    public async Task ASecondSourceOfferingToolsOfTheSameNames_IsRefused_AndTheFirstKeepsThem()
    {
        // Before, the second source's tools replaced the first's; disposing the second then unregistered the names although
        // the first was still connected, and runs of agents listing them were claimed by no instance.
        await using var server = await HttpTestServer.StartAsync();
        await using var h = await Harness.StartAsync(db);
        var first = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint, ToolFilter = t => t is "echo" or "add" });
        var echo = h.Client.GetTool("web__echo");

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => h.Client.AddMcpServerAsync(
            new McpServerOptions { Name = "web", Endpoint = server.Endpoint, ToolFilter = t => t is "echo" or "pid" }));

        Assert.Contains("tool 'echo' (as 'web__echo'): MCP server 'web' (another source) already registered a tool of that name", error.Message, StringComparison.Ordinal);
        Assert.Same(echo, h.Client.GetTool("web__echo"));
        Assert.Null(h.Client.GetTool("web__pid"));

        // The same server name with tools that do not collide is fine.
        await using var second = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint, ToolFilter = t => t == "pid" });
        Assert.Equal(["web__pid"], second.ToolNames);
        var response = await RunOneCallAsync(h, "web__echo", new { message = "still here" });
        Assert.Equal("result: Echo: still here error=False", response.Text);
        Assert.True(first.IsConnected);
    }

    [DatabaseFact]
    public async Task RateLimited_TheCallIsSnoozedForTheServersRetryAfter_Or30SecondsWithoutOne()
    {
        // Before, a 429 was snoozed 30 s whatever the server's Retry-After said.
        await using var server = await HttpTestServer.StartAsync();
        await using var h = await Harness.StartAsync(db);
        await using var source = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint, ToolFilter = t => t == "echo" });
        var echo = h.Client.GetTool("web__echo")!;
        Task<ToolSnoozeException> RateLimitedAsync(string retryAfter)
        {
            server.RateLimitNextPost(retryAfter);
            return Assert.ThrowsAsync<ToolSnoozeException>(() => echo.ExecuteAsync(Context(), Json("""{"message":"hi"}"""), CancellationToken.None));
        }

        Assert.Equal(TimeSpan.FromSeconds(120), (await RateLimitedAsync("120")).Duration);
        var untilDate = (await RateLimitedAsync(DateTimeOffset.UtcNow.AddMinutes(5).ToString("R", CultureInfo.InvariantCulture))).Duration;
        Assert.InRange(untilDate, TimeSpan.FromMinutes(4), TimeSpan.FromMinutes(5));
        Assert.Equal(TimeSpan.FromSeconds(30), (await RateLimitedAsync("")).Duration);
        Assert.Equal(TimeSpan.FromSeconds(1), (await RateLimitedAsync("0")).Duration);
        Assert.Equal(TimeSpan.FromHours(1), (await RateLimitedAsync("864000")).Duration);

        Assert.Equal("Echo: hi", await echo.ExecuteAsync(Context(), Json("""{"message":"hi"}"""), CancellationToken.None));
        Assert.True(source.IsConnected);
    }

    [DatabaseFact]
    public async Task ToolsListChanged_AddsAndRemovesTools_OnTheClientAndTheInstance()
    {
        using var server = new StdioTestServer();
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(server.Options());
        Assert.Null(h.Client.GetTool("test__late"));

        await h.Client.GetTool("test__grow")!.ExecuteAsync(Context(), Json("{}"), CancellationToken.None);

        await Eventually.TrueAsync(() => h.Client.GetTool("test__late") is not null, "tools/list_changed registers the new tool");
        Assert.Contains("test__late", source.ToolNames);
        await Eventually.TrueAsync(async () => await InstanceHasToolAsync(h.Client, "test__late") == 1, "the new tool is registered on the instance");
        var response = await RunOneCallAsync(h, "test__late", new { });
        Assert.Equal("result: late tool here error=False", response.Text);

        await h.Client.GetTool("test__shrink")!.ExecuteAsync(Context(), Json("{}"), CancellationToken.None);

        await Eventually.TrueAsync(() => h.Client.GetTool("test__late") is null, "tools/list_changed unregisters the removed tool");
        Assert.DoesNotContain("test__late", source.ToolNames);
        await Eventually.TrueAsync(async () => await InstanceHasToolAsync(h.Client, "test__late") == 0, "the removed tool is unregistered from the instance");
        Assert.Equal(1, await InstanceHasToolAsync(h.Client, "test__echo"));
    }

    [DatabaseFact]
    public async Task ToolsListChanged_WhileConnecting_IsNotLost()
    {
        // The server changes its tools and says so before its answer to the first tools/list reaches the client. Before, the
        // notification's resync found no session yet and did nothing: 'late' stayed unregistered until a reconnection.
        // Over stdio, where the notification is sure to arrive before the answer.
        using var server = new StdioTestServer();
        var options = server.Options();
        options.Environment = new Dictionary<string, string?>(options.Environment) { ["AGENTPG_MCP_TEST_CHANGE_TOOLS_DURING_FIRST_LIST"] = "1" };
        await using var h = await Harness.StartAsync(db);
        await using var source = await h.Client.AddMcpServerAsync(options);

        await Eventually.TrueAsync(() => h.Client.GetTool("test__late") is not null, "the tool added while connecting is registered");
        Assert.Contains("test__late", source.ToolNames);
        Assert.Equal("late tool here", await h.Client.GetTool("test__late")!.ExecuteAsync(Context(), Json("{}"), CancellationToken.None));
    }

    [DatabaseFact]
    public async Task DisposingTheSource_WhileAToolsListChangedResyncRuns_LeavesNoToolRegistered()
    {
        await using var server = await HttpTestServer.StartAsync();
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint });

        // grow sends tools/list_changed; the resync runs in the background while the source is disposed. (The window where a
        // resync registered its tools after the disposal unregistered them was too narrow to hit on purpose: this covers the
        // outcome, not that window.)
        await h.Client.GetTool("web__grow")!.ExecuteAsync(Context(), Json("{}"), CancellationToken.None);
        await source.DisposeAsync();

        Assert.Empty(h.Client.GetAllToolNames());
        Assert.Empty(source.ToolNames);
    }

    [DatabaseFact]
    public async Task CancellingARun_WithAnInFlightMcpCall_SendsTheCancellationToTheServer()
    {
        using var server = new StdioTestServer();
        await using var h = await Harness.StartAsync(db);
        await h.Client.AddMcpServerAsync(server.Options());
        var agent = await h.AgentAsync(a => a with { Tools = null });
        ScriptOneCall(h.Claude, "test__wait", new { });
        var run = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, "wait");
        await Eventually.TrueAsync(() => server.Events.Contains("started wait"), "the server runs the tool");

        await h.Client.CancelRunAsync(run);

        await Eventually.TrueAsync(() => server.Events.Contains("cancelled wait"), "the server receives notifications/cancelled and cancels the call");
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(run)).State);
    }

    [DatabaseFact]
    public async Task ToolTimeout_CancelsTheMcpCallOnTheServer()
    {
        using var server = new StdioTestServer();
        // The timeout fires once the call has reached the server: a real one raced the call's way through a busy thread pool,
        // the SDK and the server process (a call still on its way is cancelled before the server starts it).
        var timeouts = new HeldTimeouts(TimeSpan.FromMinutes(17));
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.ToolTimeout = timeouts.Timeout;
            o.TimeProvider = timeouts;
            o.ToolRetry = new ToolRetryOptions { MaxAttempts = 1 };
        });
        await h.Client.AddMcpServerAsync(server.Options());

        var run = RunOneCallAsync(h, "test__wait", new { });
        await Eventually.TrueAsync(() => server.Events.Contains("started wait"), "the server runs the tool");
        await timeouts.FireNextAsync();
        var response = await Eventually.WithinAsync(run, "the run");

        Assert.Contains("tool timed out", response.Text, StringComparison.Ordinal);
        await Eventually.TrueAsync(() => server.Events.Contains("cancelled wait"), "the timed-out call is cancelled on the server");
    }

    [DatabaseFact]
    public async Task StopAndDispose_CloseTheConnection_AndTheServerProcessExits()
    {
        using var server = new StdioTestServer();
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(server.Options());
        var pid = int.Parse(await h.Client.GetTool("test__pid")!.ExecuteAsync(Context(), Json("{}"), CancellationToken.None), CultureInfo.InvariantCulture);

        await h.Client.StopAsync();

        Assert.False(source.IsConnected);
        await Eventually.TrueAsync(() => !StdioTestServer.IsRunning(pid), "the stdio server process exits when the client stops");
        Assert.NotNull(h.Client.GetTool("test__echo"));

        // Started again, the source connects again (a new process).
        await h.Client.StartAsync();
        await Eventually.TrueAsync(() => source.IsConnected, "the source reconnects when the client starts again");
        var second = int.Parse(await h.Client.GetTool("test__pid")!.ExecuteAsync(Context(), Json("{}"), CancellationToken.None), CultureInfo.InvariantCulture);

        await h.Client.DisposeAsync();

        await Eventually.TrueAsync(() => !StdioTestServer.IsRunning(second), "the stdio server process exits when the client is disposed");
        Assert.Null(h.Client.GetTool("test__echo"));
    }

    [DatabaseFact]
    public async Task DisposingTheSource_UnregistersItsTools()
    {
        await using var server = await HttpTestServer.StartAsync();
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint });
        await Eventually.TrueAsync(async () => await InstanceHasToolAsync(h.Client, "web__echo") == 1, "the tool is registered on the instance");

        await source.DisposeAsync();

        Assert.Empty(h.Client.GetAllToolNames());
        await Eventually.TrueAsync(async () => await InstanceHasToolAsync(h.Client, "web__echo") == 0, "the tool is unregistered from the instance");
    }

    [DatabaseFact]
    public async Task ConnectFailures_NameTheCommandAndTheEndpoint_WithoutTheSecretsInTheirArgumentsOrUri()
    {
        // Servers commonly take credentials as arguments (a connection string) or in the endpoint's query; the errors end
        // up in logs (every failed reconnection logs one).
        await using var h = await Harness.StartAsync(db, start: false);

        var stdio = await Assert.ThrowsAsync<InvalidOperationException>(() => h.Client.AddMcpServerAsync(new McpServerOptions
        {
            Name = "pg",
            Command = "agentpg-no-such-mcp-server",
            Arguments = ["--connection", "postgresql://app:s3cret-pw@db/app"],
        }));
        Assert.Contains("'agentpg-no-such-mcp-server'", stdio.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", stdio.Message, StringComparison.Ordinal);

        var http = await Assert.ThrowsAsync<InvalidOperationException>(() => h.Client.AddMcpServerAsync(new McpServerOptions
        {
            Name = "web",
            Endpoint = new Uri("http://user:s3cret-pw@127.0.0.1:1/mcp?api_key=s3cret-key"),
        }));
        Assert.Contains("http://127.0.0.1:1/mcp", http.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("s3cret", http.Message, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task AddingAServerToADisposedClient_Throws_WithoutStartingTheServerOrRegisteringTools()
    {
        using var server = new StdioTestServer();
        await using var h = await Harness.StartAsync(db);
        await h.Client.DisposeAsync();

        await Assert.ThrowsAsync<ObjectDisposedException>(() => h.Client.AddMcpServerAsync(server.Options()));

        // Before, the server process was started and its tools registered, then Attach threw: nothing would ever stop it.
        Assert.DoesNotContain(server.Events, e => e.StartsWith("process ", StringComparison.Ordinal));
        Assert.Empty(h.Client.GetAllToolNames());
    }

    [Fact]
    public void Options_AreValidated_WithMessagesThatSayWhatToFix()
    {
        static string Errors(McpServerOptions o) => string.Join("\n", o.Validate());

        Assert.Contains("set Command (stdio, for example \"npx\") or Endpoint", Errors(new McpServerOptions { Name = "x" }), StringComparison.Ordinal);
        Assert.Contains("not both", Errors(new McpServerOptions { Name = "x", Command = "node", Endpoint = new Uri("http://127.0.0.1/mcp") }), StringComparison.Ordinal);
        Assert.Contains("Name is required", Errors(new McpServerOptions { Command = "node" }), StringComparison.Ordinal);
        Assert.Contains("Name 'my server' is invalid", Errors(new McpServerOptions { Name = "my server", Command = "node" }), StringComparison.Ordinal);
        Assert.Contains("is invalid", Errors(new McpServerOptions { Name = new string('a', 41), Command = "node" }), StringComparison.Ordinal);
        Assert.Contains("must be an absolute http or https URI", Errors(new McpServerOptions { Name = "x", Endpoint = new Uri("ftp://host/mcp") }), StringComparison.Ordinal);
        Assert.Contains("apply to Endpoint (Streamable HTTP) only", Errors(new McpServerOptions { Name = "x", Command = "node", Headers = new Dictionary<string, string> { ["a"] = "b" } }), StringComparison.Ordinal);
        Assert.Empty(new McpServerOptions { Name = "files-2", Command = "node" }.Validate());
        Assert.Equal("files-2__read", new McpServerOptions { Name = "files-2" }.ToolNameFor("read"));
        Assert.Equal("read", new McpServerOptions { Name = "files-2", DisableToolPrefix = true }.ToolNameFor("read"));
    }

    [DatabaseFact]
    public async Task BadInput_FailsWithAClearError_AndRegistersNothing()
    {
        await using var h = await Harness.StartAsync(db);

        var both = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.AddMcpServerAsync(new McpServerOptions { Name = "x", Command = "node", Endpoint = new Uri("http://127.0.0.1:1/mcp") }));
        Assert.Contains("Invalid McpServerOptions", both.Message, StringComparison.Ordinal);

        var missing = await Assert.ThrowsAsync<InvalidOperationException>(() => h.Client.AddMcpServerAsync(new McpServerOptions { Name = "ghost", Command = "agentpg-no-such-mcp-server" }));
        Assert.Contains("'agentpg-no-such-mcp-server'", missing.Message, StringComparison.Ordinal);
        Assert.Contains("MCP server 'ghost'", missing.Message, StringComparison.Ordinal);

        await using var guarded = await HttpTestServer.StartAsync(new Dictionary<string, string> { ["Authorization"] = "Bearer right" });
        var unauthorized = await Assert.ThrowsAsync<InvalidOperationException>(() => h.Client.AddMcpServerAsync(new McpServerOptions
        {
            Name = "guarded",
            Endpoint = guarded.Endpoint,
            Headers = new Dictionary<string, string> { ["Authorization"] = "Bearer wrong" },
        }));
        Assert.Contains("answered HTTP 401", unauthorized.Message, StringComparison.Ordinal);
        Assert.Contains("Headers or HeaderProvider", unauthorized.Message, StringComparison.Ordinal);

        Assert.Empty(h.Client.GetAllToolNames());
    }

    [DatabaseFact]
    public async Task ToolNamesClaudeRefuses_AreMappedToValidNames_AndCallsReachTheServerUnderTheirOwnNames()
    {
        // MCP allows '.', '/' and more in tool names, and names of any length; Claude takes ^[a-zA-Z0-9_-]{1,64}$. Before,
        // one such tool (or {Name}__{tool} longer than 64) failed AddMcpServerAsync for the whole server.
        var longName = "reports/" + new string('x', 70);
        await using var server = await HttpTestServer.StartAsync(server: new TestServer { ExtraTools = ["files.read", "ns/list items", longName] });
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint });

        // Characters replaced by '_'; too long: cut, and the first 8 hex digits of the SHA-256 of the server's name appended.
        var hash = Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(longName)))[..8];
        var longMapped = "web__reports_" + new string('x', 42) + "_" + hash;
        Assert.Equal(64, longMapped.Length);
        Assert.Contains("web__files_read", source.ToolNames);
        Assert.Contains("web__ns_list_items", source.ToolNames);
        Assert.Contains(longMapped, source.ToolNames);
        Assert.Contains("web__echo", source.ToolNames);
        Assert.Equal(longMapped, new McpServerOptions { Name = "web" }.ToolNameFor(longName));
        var longPrefix = new string('n', 30);
        var prefixed = new McpServerOptions { Name = longPrefix }.ToolNameFor(TestServer.LongToolName);
        Assert.Equal(64, prefixed.Length);
        Assert.StartsWith($"{longPrefix}__{TestServer.LongToolName[..23]}_", prefixed, StringComparison.Ordinal);
        Assert.Equal("files_read", new McpServerOptions { Name = "web", DisableToolPrefix = true }.ToolNameFor("files.read"));
        await Eventually.TrueAsync(async () => await InstanceHasToolAsync(h.Client, "web__files_read") == 1, "the mapped name is registered on the instance");

        var response = await RunOneCallAsync(h, "web__files_read", new { });
        Assert.Equal("result: files.read called error=False", response.Text);
        response = await RunOneCallAsync(h, longMapped, new { });
        Assert.Equal($"result: {longName} called error=False", response.Text);
    }

    [DatabaseFact]
    public async Task ServerToolsMappedToTheSameName_TheOneNeedingNoMappingKeepsIt_TheOthersGetTheHashOfTheirName_AndAllAreCallable()
    {
        // Before, two of a server's tools mapping to the same name failed AddMcpServerAsync for the whole server (and after a
        // reconnection or tools/list_changed, one of them was skipped).
        await using var server = await HttpTestServer.StartAsync(server: new TestServer { ExtraTools = ["files.read", "files_read", "files/read", "x.y", "x/y"] });
        await using var h = await Harness.StartAsync(db);

        var source = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint });

        static string Hash(string name) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(name)))[..8];
        var expected = new Dictionary<string, string>
        {
            ["web__files_read"] = "files_read",
            [$"web__files_read_{Hash("files.read")}"] = "files.read",
            [$"web__files_read_{Hash("files/read")}"] = "files/read",
            [$"web__x_y_{Hash("x.y")}"] = "x.y",
            [$"web__x_y_{Hash("x/y")}"] = "x/y",
        };
        foreach (var (name, serverName) in expected)
        {
            Assert.Contains(name, source.ToolNames);
            var response = await RunOneCallAsync(h, name, new { });
            Assert.Equal($"result: {serverName} called error=False", response.Text);
        }

        Assert.DoesNotContain("web__x_y", source.ToolNames);
        Assert.Contains("web__echo", source.ToolNames);
        await Eventually.TrueAsync(async () => await InstanceHasToolAsync(h.Client, $"web__x_y_{Hash("x.y")}") == 1, "the suffixed name is registered on the instance");

        // The same without the prefix.
        await using var bare = await h.Client.AddMcpServerAsync(new McpServerOptions
        {
            Name = "bare", Endpoint = server.Endpoint, DisableToolPrefix = true, ToolFilter = t => t.StartsWith("files", StringComparison.Ordinal),
        });
        Assert.Equal(new[] { "files_read", $"files_read_{Hash("files.read")}", $"files_read_{Hash("files/read")}" }.Order(StringComparer.Ordinal), bare.ToolNames);
    }
}
