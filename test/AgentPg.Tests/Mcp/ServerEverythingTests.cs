using System.Text.Json.Nodes;
using AgentPg.Mcp;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;
using ModelContextProtocol.Client;

namespace AgentPg.Tests.Mcp;

/// <summary>A real third-party MCP server: <c>@modelcontextprotocol/server-everything</c> over stdio through node,
/// installed from the npm registry by <c>./build.sh test</c> (eng/npm.sh).</summary>
public sealed class ServerEverythingTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static McpServerOptions Everything() => new()
    {
        Name = "everything",
        Command = "node",
        Arguments = [ServerEverythingFactAttribute.EntryPoint!, "stdio"],
    };

    [ServerEverythingFact]
    public async Task EchoAndGetSum_AreCalledByARun_AndEverySchemaReachesClaudeIntact()
    {
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(Everything());
        Assert.Contains("everything__echo", source.ToolNames);
        Assert.Contains("everything__get-sum", source.ToolNames);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text(string.Join(" | ", request.ToolResults.Select(r => $"{r.Content} error={r.IsError}")))
            : FakeReply.Message(
                FakeContentBlock.ToolUse("everything__echo", new { message = "hi there" }),
                FakeContentBlock.ToolUse("everything__get-sum", new { a = 2, b = 40 })) with { StopReason = "tool_use" });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "echo and add");

        Assert.Equal("Echo: hi there error=False | The sum of 2 and 40 is 42. error=False", response.Text);

        // What Claude received equals what the server lists, for every tool (enums, defaults, $schema, nested objects …).
        await using var direct = await McpClient.CreateAsync(new StdioClientTransport(new StdioClientTransportOptions
        {
            Command = "node",
            Arguments = [ServerEverythingFactAttribute.EntryPoint!, "stdio"],
        }));
        var listed = (await direct.ListToolsAsync()).ToDictionary(t => "everything__" + t.Name, t => t.ProtocolTool.InputSchema);
        var sent = h.Claude.Requests.First(r => r.IsMessagesCall).Body!.Value.GetProperty("tools").EnumerateArray()
            .ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("input_schema"));
        Assert.Equal(listed.Keys.Order(StringComparer.Ordinal), sent.Keys.Where(k => k.StartsWith("everything__", StringComparison.Ordinal)).Order(StringComparer.Ordinal));
        foreach (var (name, schema) in listed)
        {
            Assert.True(JsonNode.DeepEquals(JsonNode.Parse(schema.GetRawText()), JsonNode.Parse(sent[name].GetRawText())),
                $"{name}: Claude received {sent[name].GetRawText()}, the server lists {schema.GetRawText()}");
        }

        Assert.Contains(listed.Values, s => s.GetRawText().Contains("\"enum\"", StringComparison.Ordinal) && s.GetRawText().Contains("\"default\"", StringComparison.Ordinal));
    }

    [ServerEverythingFact]
    public async Task GetTinyImage_TheImageReachesClaudeAsAnImageBlock()
    {
        await using var h = await Harness.StartAsync(db);
        var source = await h.Client.AddMcpServerAsync(Everything());
        Assert.Contains("everything__get-tiny-image", source.ToolNames);
        var agent = await h.AgentAsync(a => a with { Tools = null });
        FakeToolResult? received = null;
        h.Claude.Respond(request =>
        {
            if (request.ToolResults.Count == 0)
            {
                return FakeReply.ToolUse("everything__get-tiny-image", new { });
            }

            received = request.ToolResults[0];
            return FakeReply.Text("a logo");
        });

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "show me the image");

        Assert.Equal("a logo", response.Text);
        Assert.NotNull(received);
        Assert.False(received.IsError);
        Assert.Equal(["text", "image", "text"], received.Blocks.Select(b => b.GetProperty("type").GetString()));
        var image = received.Blocks[1].GetProperty("source");
        Assert.Equal("base64", image.GetProperty("type").GetString());
        Assert.Equal("image/png", image.GetProperty("media_type").GetString());
        Assert.StartsWith("iVBORw0KGgo", image.GetProperty("data").GetString(), StringComparison.Ordinal);
        Assert.Equal(ContentTypes.Image, Assert.Single(response.ToolCalls).OutputBlocks[1].Type);
    }

    [ServerEverythingFact]
    public async Task InvalidInput_IsRejectedBeforeTheCall()
    {
        await using var h = await Harness.StartAsync(db);
        await h.Client.AddMcpServerAsync(Everything());
        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(request => request.ToolResults.Count > 0
            ? FakeReply.Text($"{request.ToolResults[0].Content} error={request.ToolResults[0].IsError}")
            : FakeReply.ToolUse("everything__get-sum", new { a = "two", b = 40 }));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "add");

        Assert.StartsWith("Invalid input for tool 'everything__get-sum': 'a' must be a number", response.Text, StringComparison.Ordinal);
        Assert.EndsWith("error=True", response.Text, StringComparison.Ordinal);
    }
}

/// <summary>Runs when <c>AGENTPG_MCP_EVERYTHING</c> points at server-everything's entry point (set by <c>./build.sh test</c>);
/// skipped otherwise outside CI, failed in CI.</summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class ServerEverythingFactAttribute : FactAttribute
{
    public ServerEverythingFactAttribute()
    {
        if (TestDatabase.UnavailableReason is { } reason && !TestDatabase.IsCi)
        {
            Skip = reason;
        }
        else if (EntryPoint is null && !TestDatabase.IsCi)
        {
            Skip = "AGENTPG_MCP_EVERYTHING is not set: run ./build.sh test, which installs @modelcontextprotocol/server-everything from npm.";
        }
    }

    public static string? EntryPoint => Environment.GetEnvironmentVariable("AGENTPG_MCP_EVERYTHING") is { Length: > 0 } path && File.Exists(path) ? path : null;
}
