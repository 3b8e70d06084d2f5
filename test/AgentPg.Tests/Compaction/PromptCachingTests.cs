using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Compaction;

public sealed class PromptCachingTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static TestTool Lookup() => new("lookup", (_, _, _) => Task.FromResult(new string('r', 600)));

    private static FakeClaudeServerOptions SmallCache() => new() { MinimumCacheableTokens = 50 };

    [DatabaseFact]
    public async Task ToolLoop_PlacesBreakpointsAfterSystemAndAtBothConversationEnds_AndReadsTheCacheOnLaterIterations()
    {
        await using var h = await Harness.StartAsync(db, SmallCache(), tools: Lookup());
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"], SystemPrompt = "You are a test agent. " + new string('s', 400) });
        h.Claude.Enqueue(FakeReply.ToolUse("lookup", new { }), FakeReply.ToolUse("lookup", new { }), FakeReply.Text("done"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "Look it up twice. " + new string('p', 300));

        var requests = h.Claude.Requests.Where(r => r.IsMessagesCall).Select(r => r.Body!.Value).ToList();
        Assert.Equal(3, requests.Count);
        foreach (var body in requests)
        {
            var system = Assert.Single(body.GetProperty("system").EnumerateArray());
            Assert.Equal("ephemeral", system.GetProperty("cache_control").GetProperty("type").GetString());
            Assert.False(system.GetProperty("cache_control").TryGetProperty("ttl", out _), "streaming runs use the 5-minute TTL");
            Assert.False(body.GetProperty("tools")[0].TryGetProperty("cache_control", out _), "with a system prompt the tools need no breakpoint of their own");
            Assert.True(HasBreakpoint(LastBlock(body, 1)), "the end of the conversation carries the moving breakpoint");
            Assert.True(CountBreakpoints(body) <= 4);
        }

        Assert.Equal(2, CountBreakpoints(requests[0]));
        // Later requests also mark where the previous request ended (the previous last user turn), which they read.
        Assert.Equal(3, CountBreakpoints(requests[1]));
        Assert.True(HasBreakpoint(LastBlock(requests[1], 3)));
        Assert.True(HasBreakpoint(LastBlock(requests[2], 3)));

        var iterations = await h.Client.GetIterationsAsync(response.RunId);
        Assert.Equal(0, iterations[0].Usage.CacheReadInputTokens);
        Assert.True(iterations[0].Usage.CacheCreationInputTokens > 0, "the first iteration writes the cache");
        Assert.All(iterations.Skip(1), i => Assert.True(i.Usage.CacheReadInputTokens > 0, $"iteration {i.IterationNumber} read nothing from the cache"));
        Assert.Equal(iterations.Sum(i => i.Usage.CacheReadInputTokens), response.Usage.CacheReadInputTokens);
        Assert.True(response.Usage.CacheReadInputTokens > response.Usage.InputTokens, "most of the later prompts came from the cache");
    }

    [DatabaseFact]
    public async Task NewRunInTheSession_ReadsThePreviousRunsPrefix()
    {
        await using var h = await Harness.StartAsync(db, SmallCache());
        var agent = await h.AgentAsync(a => a with { SystemPrompt = "Short." });
        var session = await h.Client.NewSessionAsync();
        h.Claude.Enqueue(FakeReply.Text("first answer " + new string('a', 400)), FakeReply.Text("second answer"));

        await h.Client.RunFastSyncAsync(session, agent.Id, "first question " + new string('q', 400));
        var second = await h.Client.RunFastSyncAsync(session, agent.Id, "second question");

        Assert.True(second.Usage.CacheReadInputTokens > 0, "the second run should read the first run's prompt from the cache");
    }

    [DatabaseFact]
    public async Task WithoutSystemPrompt_TheLastToolCarriesTheStableBreakpoint()
    {
        await using var h = await Harness.StartAsync(db, SmallCache(), tools: Lookup());
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"], SystemPrompt = null });
        h.Claude.Enqueue(FakeReply.Text("hi"));

        await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hello");

        var body = h.Claude.Requests.Single(r => r.IsMessagesCall).Body!.Value;
        Assert.False(body.TryGetProperty("system", out _));
        var tools = body.GetProperty("tools");
        Assert.True(HasBreakpoint(tools[tools.GetArrayLength() - 1]));
    }

    [DatabaseFact]
    public async Task PromptCachingOff_SendsNoBreakpoint()
    {
        await using var h = await Harness.StartAsync(db, SmallCache(), o => o.PromptCaching = PromptCacheMode.Off, tools: Lookup());
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"] });
        h.Claude.Enqueue(FakeReply.ToolUse("lookup", new { }), FakeReply.Text("done"));

        var response = await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go");

        Assert.All(h.Claude.Requests.Where(r => r.IsMessagesCall), r => Assert.DoesNotContain("cache_control", r.Body!.Value.GetRawText(), StringComparison.Ordinal));
        Assert.Equal("You are a test agent.", h.Claude.Requests.First(r => r.IsMessagesCall).Body!.Value.GetProperty("system").GetString());
        Assert.Equal(0, response.Usage.CacheReadInputTokens + response.Usage.CacheCreationInputTokens);
    }

    [DatabaseFact]
    public async Task BatchRuns_DefaultToTheOneHourTtl_AndAnExplicitTtlWins()
    {
        await using (var h = await Harness.StartAsync(db, SmallCache()))
        {
            var agent = await h.AgentAsync();
            h.Claude.Enqueue(FakeReply.Text("batched"));
            await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hello"), "the batch run to complete");
            var body = h.Claude.Requests.Single(r => r.Path == "/v1/messages/batches" && r.Method == "POST").Body!.Value
                .GetProperty("requests")[0].GetProperty("params");
            Assert.All(Breakpoints(body), b => Assert.Equal("1h", b.GetProperty("ttl").GetString()));
        }

        await using (var h = await Harness.StartAsync(db, SmallCache(), o => o.PromptCacheTtl = TimeSpan.FromHours(1)))
        {
            var agent = await h.AgentAsync();
            h.Claude.Enqueue(FakeReply.Text("streamed"));
            await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hello");
            Assert.All(Breakpoints(h.Claude.Requests.Single(r => r.IsMessagesCall).Body!.Value), b => Assert.Equal("1h", b.GetProperty("ttl").GetString()));
        }
    }

    [Fact]
    public void PromptCacheTtl_OtherThanFiveMinutesOrOneHour_IsRejectedByName()
    {
        var errors = new AgentPgOptions { PromptCacheTtl = TimeSpan.FromMinutes(30) }.Validate();
        Assert.Contains(errors, e => e.Contains("PromptCacheTtl", StringComparison.Ordinal) && e.Contains("5 minutes or 1 hour", StringComparison.Ordinal));
        Assert.Empty(new AgentPgOptions { PromptCacheTtl = TimeSpan.FromHours(1) }.Validate());
    }

    [DatabaseFact]
    public async Task ContextManagementInTheAgentConfig_IsSentAsIsWithItsBeta()
    {
        await using var h = await Harness.StartAsync(db);
        var management = new Dictionary<string, object?>
        {
            ["edits"] = new List<object?>
            {
                new Dictionary<string, object?>
                {
                    ["type"] = "clear_tool_uses_20250919",
                    ["trigger"] = new Dictionary<string, object?> { ["type"] = "input_tokens", ["value"] = 30000 },
                    ["keep"] = new Dictionary<string, object?> { ["type"] = "tool_uses", ["value"] = 3 },
                },
            },
        };
        var agent = await h.AgentAsync(a => a with { Config = new Dictionary<string, object?> { ["context_management"] = management } });
        h.Claude.Enqueue(FakeReply.Text("ok"));

        await h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "hello");

        var request = h.Claude.Requests.Single(r => r.IsMessagesCall);
        Assert.Contains("context-management-2025-06-27", request.Betas);
        // Agent config lives in jsonb, which orders keys its own way: the value is the same, not its key order.
        Assert.True(JsonNode.DeepEquals(
            JsonSerializer.SerializeToNode(management),
            JsonNode.Parse(request.Body!.Value.GetProperty("context_management").GetRawText())));
    }

    [DatabaseFact]
    public async Task ContextManagementThatIsNotAnObjectWithEdits_IsRefusedWhenTheAgentIsCreated()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var ex = await Assert.ThrowsAsync<ArgumentException>(() => h.AgentAsync(a => a with
        {
            Config = new Dictionary<string, object?> { ["context_management"] = "clear everything" },
        }));
        Assert.Contains("context_management", ex.Message, StringComparison.Ordinal);
        Assert.Contains("edits", ex.Message, StringComparison.Ordinal);
    }

    private static JsonElement LastBlock(JsonElement body, int fromEnd)
    {
        var messages = body.GetProperty("messages");
        var content = messages[messages.GetArrayLength() - fromEnd].GetProperty("content");
        return content[content.GetArrayLength() - 1];
    }

    private static bool HasBreakpoint(JsonElement element) => element.TryGetProperty("cache_control", out _);

    private static int CountBreakpoints(JsonElement body) => Breakpoints(body).Count;

    private static List<JsonElement> Breakpoints(JsonElement body)
    {
        var found = new List<JsonElement>();
        Walk(body);
        return found;

        void Walk(JsonElement e)
        {
            if (e.ValueKind == JsonValueKind.Object)
            {
                foreach (var p in e.EnumerateObject())
                {
                    if (p.Name == "cache_control")
                    {
                        found.Add(p.Value);
                    }
                    else
                    {
                        Walk(p.Value);
                    }
                }
            }
            else if (e.ValueKind == JsonValueKind.Array)
            {
                foreach (var item in e.EnumerateArray())
                {
                    Walk(item);
                }
            }
        }
    }
}
