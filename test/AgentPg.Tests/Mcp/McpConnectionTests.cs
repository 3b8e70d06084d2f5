using System.Globalization;
using System.Text.Json;
using AgentPg.Mcp;
using AgentPg.McpTestServer;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Mcp;

/// <summary>Connecting to MCP servers that misbehave or go away: a stuck tool discovery, a handshake that never completes,
/// paginated tool lists, an HTTP server that stops and comes back.</summary>
public sealed class McpConnectionTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static JsonElement Json(string json) => JsonDocument.Parse(json).RootElement.Clone();

    private static int ServerPid(StdioTestServer server)
        => server.Events.Where(e => e.StartsWith("process ", StringComparison.Ordinal)).Select(e => int.Parse(e["process ".Length..], CultureInfo.InvariantCulture)).Single();

    [DatabaseFact]
    public async Task ToolDiscoveryThatNeverAnswers_FailsAddWithATimeoutException_AndTheServerProcessExits()
    {
        // The handshake succeeds, tools/list never answers. Before, AddMcpServerAsync threw a TaskCanceledException although
        // nothing was cancelled (the TimeoutException naming ConnectTimeout was only thrown for the handshake).
        using var server = new StdioTestServer();
        var timeouts = new HeldTimeouts(TimeSpan.FromMinutes(17));
        await using var h = await Harness.StartAsync(db, o => o.TimeProvider = timeouts, start: false);
        var options = server.Options();
        options.Environment = new Dictionary<string, string?>(options.Environment) { ["AGENTPG_MCP_TEST_HANG_LIST"] = "1" };
        options.ConnectTimeout = timeouts.Timeout;

        var adding = h.Client.AddMcpServerAsync(options);
        await Eventually.TrueAsync(() => server.Events.Any(e => e.StartsWith("listed", StringComparison.Ordinal)), "the server receives tools/list");
        await timeouts.FireNextAsync();
        await Eventually.TrueAsync(() => adding.IsCompleted, "AddMcpServerAsync ends");
        var error = await Assert.ThrowsAsync<TimeoutException>(() => adding);

        Assert.Contains("MCP server 'test'", error.Message, StringComparison.Ordinal);
        Assert.Contains("McpServerOptions.ConnectTimeout", error.Message, StringComparison.Ordinal);
        Assert.Contains("tools/list", error.Message, StringComparison.Ordinal);
        var pid = ServerPid(server);
        await Eventually.TrueAsync(() => !StdioTestServer.IsRunning(pid), "the server process exits");
        Assert.Empty(h.Client.GetAllToolNames());
    }

    [DatabaseFact]
    public async Task AHandshakeThatNeverCompletes_FailsAddWithATimeoutException_AndTheProcessIsStopped()
    {
        // A command that is not an MCP server and never answers (it reads nothing, writes nothing).
        using var server = new StdioTestServer();
        var pidFile = Path.Combine(Path.GetDirectoryName(server.EventsFile)!, "pid");
        var timeouts = new HeldTimeouts(TimeSpan.FromMinutes(17));
        await using var h = await Harness.StartAsync(db, o => o.TimeProvider = timeouts, start: false);

        var adding = h.Client.AddMcpServerAsync(new McpServerOptions
        {
            Name = "mute",
            Command = "sh",
            Arguments = ["-c", $"echo $$ > '{pidFile}'; exec sleep 600"],
            ConnectTimeout = timeouts.Timeout,
        });
        await Eventually.TrueAsync(() => File.Exists(pidFile) && File.ReadAllText(pidFile).EndsWith('\n'), "the process starts");
        await timeouts.FireNextAsync();
        await Eventually.TrueAsync(() => adding.IsCompleted, "AddMcpServerAsync ends");
        var error = await Assert.ThrowsAsync<TimeoutException>(() => adding);

        Assert.Contains("MCP server 'mute'", error.Message, StringComparison.Ordinal);
        var pid = int.Parse(File.ReadAllText(pidFile).Trim(), CultureInfo.InvariantCulture);
        await Eventually.TrueAsync(() => !StdioTestServer.IsRunning(pid), "the process that never answered is stopped");
    }

    private static McpServerOptions Raw(Func<string, bool>? filter = null) => new()
    {
        Name = "raw",
        Command = "dotnet",
        Arguments = [StdioTestServer.ServerPath(), "--raw"],
        ToolFilter = filter,
    };

    [DatabaseFact]
    public async Task AToolWhoseDefinitionTheSdkRefuses_FailsAddNamingIt_AndToolFilterExcludesIt()
    {
        // Before, the SDK's refusal of one tool's inputSchema failed the whole tools/list: AddMcpServerAsync threw
        // "ArgumentException: The specified document is not a valid MCP tool input JSON schema. (Parameter 'InputSchema')",
        // naming neither the server nor the tool, and no ToolFilter could exclude it.
        await using var h = await Harness.StartAsync(db, start: false);

        var error = await Assert.ThrowsAsync<InvalidOperationException>(() => h.Client.AddMcpServerAsync(Raw()));

        Assert.Contains("MCP server 'raw' offers tools AgentPg cannot register: tool 'stringy': ", error.Message, StringComparison.Ordinal);
        Assert.Contains("ToolFilter", error.Message, StringComparison.Ordinal);
        Assert.DoesNotContain("'plain'", error.Message, StringComparison.Ordinal);
        Assert.Empty(h.Client.GetAllToolNames());

        await using var source = await h.Client.AddMcpServerAsync(Raw(t => t != "stringy"));
        Assert.Equal(["raw__plain", "raw__untyped"], source.ToolNames);
    }

    [DatabaseFact]
    public async Task AnInputSchemaWithoutType_ReachesClaudeAsAnObjectSchema_AndTheToolIsCalled()
    {
        // MCP and Claude both require "type": "object"; a server that leaves it out means it (its tools take objects).
        await using var h = await Harness.StartAsync(db);
        await using var source = await h.Client.AddMcpServerAsync(Raw(t => t != "stringy"));
        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text($"result: {request.ToolResults[0].Content} error={request.ToolResults[0].IsError}")
            : FakeReply.ToolUse("raw__untyped", new { q = "cats" }));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "search");

        Assert.Equal("""result: untyped called with {"q":"cats"} error=False""", response.Text);
        var sent = h.Claude.Requests.First(r => r.IsMessagesCall).Body!.Value.GetProperty("tools").EnumerateArray()
            .Single(t => t.GetProperty("name").GetString() == "raw__untyped").GetProperty("input_schema");
        Assert.Equal("object", sent.GetProperty("type").GetString());
        Assert.Equal(["q"], sent.GetProperty("required").EnumerateArray().Select(r => r.GetString()));
    }

    [DatabaseFact]
    public async Task AParameterAnnotatedXMcpHeader_IsSentAsAnMcpParamHeader()
    {
        // AgentPg lists the tools itself (one refused tool must not fail the list): it fills the SDK's tool cache as the SDK's
        // own listing does, so calls still mirror annotated parameters in headers.
        await using var server = await HttpTestServer.StartAsync(server: new TestServer { HeaderTool = true });
        await using var h = await Harness.StartAsync(db, start: false);
        await using var source = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint });

        var output = await h.Client.GetTool("web__regional")!.ExecuteAsync(McpToolTests.Context(), Json("""{"region":"eu-west"}"""), CancellationToken.None);

        Assert.Equal("region eu-west", output);
        Assert.Contains(server.SeenParamHeaders, header => header.Equals("Mcp-Param-Region: eu-west", StringComparison.OrdinalIgnoreCase));
    }

    [DatabaseFact]
    public async Task APaginatedToolList_IsFollowedToTheEnd()
    {
        await using var server = await HttpTestServer.StartAsync(server: new TestServer { PageSize = 3, ExtraTools = ["x1", "x2"] });
        await using var h = await Harness.StartAsync(db, start: false);

        var source = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = server.Endpoint });

        Assert.Equal(14, source.ToolNames.Count);
        Assert.Contains("web__x2", source.ToolNames);
        Assert.Contains("listed 12", server.Server.Events);
        Assert.Equal("x2 called", await h.Client.GetTool("web__x2")!.ExecuteAsync(McpToolTests.Context(), Json("{}"), CancellationToken.None));
    }

    [DatabaseFact]
    public async Task AnHttpServerThatStopsAndComesBack_CallsMeanwhileDoNotReachIt_TheSourceReconnects_AndTheRunCompletes()
    {
        var first = await HttpTestServer.StartAsync();
        var port = first.Endpoint.Port;
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(new McpServerOptions { Name = "web", Endpoint = first.Endpoint, ToolFilter = t => t == "echo" });
        var echo = h.Client.GetTool("web__echo")!;
        Assert.Equal("Echo: one", await echo.ExecuteAsync(McpToolTests.Context(), Json("""{"message":"one"}"""), CancellationToken.None));

        await first.DisposeAsync();

        // The first call either finds no server (connection refused: snoozed, no attempt used) or is sent on the pooled
        // connection the stopped server closed ("response ended prematurely": the client cannot tell whether the server ran
        // it, so a failed attempt, as docs/mcp.md says). Either way the source drops the session: the next call snoozes.
        var firstCall = await Assert.ThrowsAnyAsync<Exception>(() => echo.ExecuteAsync(McpToolTests.Context(), Json("""{"message":"two"}"""), CancellationToken.None));
        Assert.True(firstCall is ToolSnoozeException || firstCall.Message.Contains("connection lost during the call", StringComparison.Ordinal), firstCall.ToString());
        var snooze = await Assert.ThrowsAsync<ToolSnoozeException>(() => echo.ExecuteAsync(McpToolTests.Context(), Json("""{"message":"two"}"""), CancellationToken.None));
        Assert.Contains("MCP server 'web'", snooze.Message, StringComparison.Ordinal);

        await using var second = await HttpTestServer.StartAsync(port: port);
        await Eventually.TrueAsync(() => source.IsConnected, "the source reconnects to the server on the same endpoint", TimeSpan.FromSeconds(60));
        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text($"result: {request.ToolResults[0].Content} error={request.ToolResults[0].IsError}")
            : FakeReply.ToolUse("web__echo", new { message = "three" }));
        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "echo");

        Assert.Equal("result: Echo: three error=False", response.Text);
        Assert.Contains(second.Server.Events, e => e.StartsWith("called echo", StringComparison.Ordinal));
    }

    [DatabaseFact]
    public async Task AServerUnreachableForLongerThanUnavailableTimeout_FailsCallsAtOnce_AndClaudeIsToldWhy()
    {
        // Before: a call snoozed for as long as the outage lasted, so a run waited in pending_tools for ever when a server
        // was gone for good.
        var server = await HttpTestServer.StartAsync();
        var clock = new SteppedClock();
        await using var h = await Harness.StartAsync(db, o => o.TimeProvider = clock);
        await h.Client.AddMcpServerAsync(new McpServerOptions
        {
            Name = "web",
            Endpoint = server.Endpoint,
            ToolFilter = t => t == "echo",
            UnavailableTimeout = TimeSpan.FromMinutes(2),
        });
        var echo = h.Client.GetTool("web__echo")!;
        await server.DisposeAsync();

        // The first call may be a failed attempt (see the test above); the ones after it snooze, using no attempt.
        await Assert.ThrowsAnyAsync<Exception>(() => echo.ExecuteAsync(McpToolTests.Context(), Json("""{"message":"one"}"""), CancellationToken.None));
        await Assert.ThrowsAsync<ToolSnoozeException>(() => echo.ExecuteAsync(McpToolTests.Context(), Json("""{"message":"two"}"""), CancellationToken.None));

        clock.Step(TimeSpan.FromMinutes(2));
        var cancelled = await Assert.ThrowsAsync<ToolCancelException>(() => echo.ExecuteAsync(McpToolTests.Context(), Json("""{"message":"three"}"""), CancellationToken.None));
        Assert.Contains("MCP server 'web' has been unreachable for 2 min", cancelled.Message, StringComparison.Ordinal);
        Assert.Contains("McpServerOptions.UnavailableTimeout: 2 min", cancelled.Message, StringComparison.Ordinal);

        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text($"error={request.ToolResults[0].IsError}: {request.ToolResults[0].Content}")
            : FakeReply.ToolUse("web__echo", new { message = "four" }));
        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "echo");

        Assert.StartsWith("error=True: tool cancelled: MCP server 'web' has been unreachable for 2 min", response.Text, StringComparison.Ordinal);
    }

    [Fact]
    public void UnavailableTimeout_MustBePositiveOrInfinite()
    {
        var options = new McpServerOptions { Name = "web", Endpoint = new Uri("http://127.0.0.1:1/mcp"), UnavailableTimeout = TimeSpan.Zero };
        Assert.Contains(options.Validate(), e => e.Contains("UnavailableTimeout must be positive or Timeout.InfiniteTimeSpan", StringComparison.Ordinal));
        options.UnavailableTimeout = Timeout.InfiniteTimeSpan;
        Assert.Empty(options.Validate());
    }
}

public sealed class McpEnvironmentTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    [DatabaseFact]
    public async Task AStdioServer_InheritsTheEnvironment_WithEnvironmentOnTop_AndANullValueRemovesAnInheritedVariable()
    {
        // docs/mcp.md tells users to keep secrets such as ANTHROPIC_API_KEY from third-party servers with a null value.
        var secret = "AGENTPG_TEST_SECRET_" + Guid.NewGuid().ToString("N");
        var kept = "AGENTPG_TEST_KEPT_" + Guid.NewGuid().ToString("N");
        Environment.SetEnvironmentVariable(secret, "s3cret");
        Environment.SetEnvironmentVariable(kept, "inherited");
        try
        {
            using var server = new StdioTestServer();
            var envFile = Path.Combine(Path.GetDirectoryName(server.EventsFile)!, "env.txt");
            var options = server.Options();
            options.Command = "sh";
            options.Arguments = ["-c", $"env > '{envFile}'; exec dotnet '{StdioTestServer.ServerPath()}'"];
            options.Environment = new Dictionary<string, string?>(options.Environment) { [secret] = null, ["AGENTPG_TEST_ADDED"] = "added" };
            await using var h = await Harness.StartAsync(db, start: false);

            await using var source = await h.Client.AddMcpServerAsync(options);

            var environment = File.ReadAllLines(envFile);
            Assert.DoesNotContain(environment, line => line.StartsWith(secret + "=", StringComparison.Ordinal));
            Assert.Contains($"{kept}=inherited", environment);
            Assert.Contains("AGENTPG_TEST_ADDED=added", environment);
        }
        finally
        {
            Environment.SetEnvironmentVariable(secret, null);
            Environment.SetEnvironmentVariable(kept, null);
        }
    }
}
