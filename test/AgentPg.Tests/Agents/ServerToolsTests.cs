using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Agents;

/// <summary>Claude's server tools on agents (AgentDefinition.ServerTools): stored, validated, sent on every model call
/// (streaming and batch), their blocks kept and sent back verbatim, and tool search deferring the client tools.</summary>
public sealed class ServerToolsTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_runTimeout = TimeSpan.FromSeconds(60);

    [DatabaseFact]
    public async Task CreateGetListUpdate_ServerTools_RoundTripAsConfigured()
    {
        await using var client = db.CreateClient();
        var metadata = new Dictionary<string, object?> { ["test"] = Guid.NewGuid().ToString("N") };
        using var custom = JsonDocument.Parse("""{ "type": "web_search_20260209", "name": "web_search", "max_uses": 2, "allowed_callers": ["direct"] }""");
        IReadOnlyList<ServerTool> tools =
        [
            ServerTool.WebFetch(maxUses: 3, blockedDomains: ["ads.example.com"], citations: true),
            ServerTool.CodeExecution(),
            ServerTool.FromJson(custom.RootElement, beta: "some-beta-2026-02-09"),
            ServerTool.ToolSearch(ToolSearchKind.Regex, ["lookup"]),
        ];

        var created = await client.CreateAgentAsync(new AgentDefinition
        {
            Name = "researcher", Model = "claude-sonnet-4-5", Tools = ["lookup"], ServerTools = tools, Metadata = metadata,
        });

        Assert.Equal(tools, created.ServerTools);
        var read = await client.GetAgentByIdAsync(created.Id);
        Assert.Equal(tools, read.ServerTools);
        // The text as configured (a json column): the order of the fields is the prompt's cached prefix.
        Assert.Equal("""{"type":"web_search_20260209","name":"web_search","max_uses":2,"allowed_callers":["direct"]}""", read.ServerTools![2].Definition.GetRawText());
        Assert.Equal(tools, (await client.GetAgentByNameAsync("researcher", metadata)).ServerTools);
        Assert.Equal(tools, (await client.ListAgentsAsync(metadata)).Agents.Single().ServerTools);

        await client.UpdateAgentAsync(read with { ServerTools = [ServerTool.WebSearch(maxUses: 1)] });
        Assert.Equal([ServerTool.WebSearch(maxUses: 1)], (await client.GetAgentByIdAsync(created.Id)).ServerTools);
        await client.UpdateAgentAsync(read with { ServerTools = [] });
        Assert.Null((await client.GetAgentByIdAsync(created.Id)).ServerTools);
        await client.UpdateAgentAsync(read with { ServerTools = null });
        Assert.Null((await client.GetAgentByIdAsync(created.Id)).ServerTools);
    }

    [DatabaseFact]
    public async Task CreateAndUpdate_ConflictingServerTools_ThrowSayingWhatToFix_AndStoreNothing()
    {
        await using var client = db.CreateClient();
        var metadata = new Dictionary<string, object?> { ["test"] = Guid.NewGuid().ToString("N") };
        var helper = await client.CreateAgentAsync(new AgentDefinition { Name = "web_search", Model = "claude-sonnet-4-5", Metadata = metadata });
        var cases = new (string Mistake, Func<AgentDefinition, AgentDefinition> Make, string Message)[]
        {
            ("duplicate names", a => a with { ServerTools = [ServerTool.WebFetch(), Json("""{"type":"web_fetch_20260209","name":"web_fetch"}""")] },
                "two tools named 'web_fetch'"),
            ("a client tool of the same name", a => a with { Tools = ["code_execution"], ServerTools = [ServerTool.CodeExecution()] },
                "lists 'code_execution', the name of its server tool code_execution_20250825"),
            ("the memory tool's name", a => a with { Memory = AgentMemory.PerAgent, ServerTools = [Json("""{"type":"x_20260101","name":"memory"}""")] },
                "the name of Claude's memory tool"),
            ("two tool searches", a => a with { ServerTools = [ServerTool.ToolSearch(ToolSearchKind.Regex), ServerTool.ToolSearch(ToolSearchKind.Bm25)] },
                "more than one tool search tool"),
            ("approval of a server tool", a => a with { ToolsRequiringApproval = ["web_fetch"], ServerTools = [ServerTool.WebFetch()] },
                "no call of it can wait for a person"),
            ("a server tool kept loaded", a => a with { ServerTools = [ServerTool.ToolSearch(ToolSearchKind.Bm25, ["web_fetch"]), ServerTool.WebFetch()] },
                "only client tools and delegate agents are deferred"),
            ("an unknown tool kept loaded", a => a with { Tools = ["lookup"], ServerTools = [ServerTool.ToolSearch(ToolSearchKind.Bm25, ["lokup"])] },
                "'lokup' in AlwaysLoadedTools, which is not in its Tools"),
            ("a null entry", a => a with { ServerTools = [null!] }, "holds a null entry"),
            ("a delegate of the same name", a => a with { AgentIds = [helper.Id], ServerTools = [ServerTool.WebSearch()] },
                "a server tool (web_search_20250305) and a delegate agent both named 'web_search'"),
        };

        foreach (var (mistake, make, message) in cases)
        {
            var definition = make(new AgentDefinition { Name = "bad_" + mistake.Replace(' ', '_'), Model = "claude-sonnet-4-5", Metadata = metadata });
            var ex = await Assert.ThrowsAnyAsync<ArgumentException>(() => client.CreateAgentAsync(definition));
            Assert.True(ex.Message.Contains(message, StringComparison.Ordinal), $"{mistake}: {ex.Message}");

            // Nothing stored; and an update of a good agent to the same mistake leaves it as it was.
            Assert.DoesNotContain((await client.ListAgentsAsync(metadata)).Agents, a => a.Name == definition.Name);
            var good = await client.CreateAgentAsync(definition with { Name = "good_" + mistake.Replace(' ', '_'), ServerTools = null });
            await Assert.ThrowsAnyAsync<ArgumentException>(() => client.UpdateAgentAsync(definition with { Id = good.Id, Name = good.Name }));
            Assert.Equal(good.UpdatedAt, (await client.GetAgentByIdAsync(good.Id)).UpdatedAt);
        }

        // Renaming a delegate to the name of its delegator's server tool would make every call of the delegator fail.
        var other = await client.CreateAgentAsync(new AgentDefinition { Name = "summarizer", Model = "claude-sonnet-4-5", Metadata = metadata });
        await client.CreateAgentAsync(new AgentDefinition
        {
            Name = "lead", Model = "claude-sonnet-4-5", Metadata = metadata, AgentIds = [other.Id], ServerTools = [ServerTool.CodeExecution()],
        });
        var rename = await Assert.ThrowsAnyAsync<ArgumentException>(() => client.UpdateAgentAsync(other with { Name = "code_execution" }));
        Assert.Contains("both named 'code_execution'", rename.Message, StringComparison.Ordinal);
        Assert.Equal("summarizer", (await client.GetAgentByIdAsync(other.Id)).Name);
    }

    [DatabaseTheory]
    [InlineData(RunMode.Streaming)]
    [InlineData(RunMode.Batch)]
    public async Task Run_SendsExactlyTheConfiguredServerTools_AfterTheClientTools_WithTheirBetas(RunMode mode)
    {
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("lookup")]);
        using var fetch = JsonDocument.Parse("""{"type":"web_fetch_20260209","name":"web_fetch","max_uses":1}""");
        IReadOnlyList<ServerTool> serverTools =
        [
            ServerTool.WebSearch(maxUses: 5, allowedDomains: ["example.org"], userLocation: new WebSearchUserLocation { City = "Paris", Country = "FR" }),
            ServerTool.FromJson(fetch.RootElement, beta: "web-fetch-2026-02-09"),
            ServerTool.CodeExecution(),
        ];
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"], ServerTools = serverTools });
        var requests = new ConcurrentQueue<FakeRequest>();
        h.Claude.Respond(request =>
        {
            requests.Enqueue(request);
            return FakeReply.Text("done");
        });

        var response = await Eventually.WithinAsync(Run(h, mode, await h.Client.NewSessionAsync(), agent.Id, "go"), "the run", s_runTimeout);

        Assert.Equal("done", response.Text);
        var request = Assert.Single(requests);
        Assert.Equal(["lookup", "web_search", "web_fetch", "code_execution"], request.Tools.Select(t => t.Name));
        Assert.Null(request.Tools[0].ServerToolType);
        for (var i = 0; i < serverTools.Count; i++)
        {
            AssertSameJson(serverTools[i].Definition, request.Tools[i + 1].Json);
        }

        Assert.Contains("web-fetch-2026-02-09", request.Betas);
        Assert.All(request.Tools, t => Assert.False(t.DeferLoading));
    }

    [DatabaseTheory]
    [InlineData(RunMode.Streaming)]
    [InlineData(RunMode.Batch)]
    public async Task WebSearchTurn_PausedThenContinued_KeepsTheServerBlocksVerbatim_AndSendsThemBack(RunMode mode)
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { ServerTools = [ServerTool.WebSearch(maxUses: 3)] });
        var search = FakeContentBlock.ServerToolUse("web_search", new { query = "weather in Paris today" }, "srvtoolu_01WYG3ziw53XMcoyKL4XcZmE");
        var results = FakeContentBlock.WebSearchToolResult("srvtoolu_01WYG3ziw53XMcoyKL4XcZmE", ("https://example.org/paris", "Paris weather"));
        var requests = new ConcurrentQueue<FakeRequest>();
        h.Claude.Respond(request =>
        {
            requests.Enqueue(request);
            var last = request.Messages[request.Messages.GetArrayLength() - 1];
            return last.GetProperty("role").GetString() == "assistant"
                ? FakeReply.Text("Sunny, 21 °C.")
                : request.LastUserText == "weather?"
                    ? FakeReply.Message(FakeContentBlock.Text("Let me look."), search, results) with { StopReason = FakeStopReason.PauseTurn }
                    : FakeReply.Text("You asked before.");
        });
        var session = await h.Client.NewSessionAsync();

        var response = await Eventually.WithinAsync(Run(h, mode, session, agent.Id, "weather?"), "the first run", s_runTimeout);

        Assert.Contains("Sunny, 21 °C.", response.Text, StringComparison.Ordinal);
        Assert.Equal(2, response.IterationCount);
        // The continuation sent the paused turn back as Claude wrote it.
        var continuation = requests.ElementAt(1).Messages;
        Assert.Equal(2, continuation.GetArrayLength());
        var paused = continuation[1].GetProperty("content");
        Assert.Equal(3, paused.GetArrayLength());
        AssertSameJson(search.Json, paused[1]);
        AssertSameJson(results.Json, paused[2]);
        // Stored verbatim.
        var stored = (await h.Client.GetMessagesAsync(session)).Where(m => m.Role == MessageRole.Assistant).SelectMany(m => m.Content).ToList();
        Assert.Equal(["text", "server_tool_use", "web_search_tool_result", "text"], stored.Select(b => b.Type));
        AssertSameJson(search.Json, stored[1].Raw!.Value);
        AssertSameJson(results.Json, stored[2].Raw!.Value);

        // The next run of the session sends them again, and the server tool again.
        Assert.Equal("You asked before.", (await Eventually.WithinAsync(Run(h, mode, session, agent.Id, "and now?"), "the second run", s_runTimeout)).Text);
        var next = requests.Last();
        var assistant = next.Messages[1].GetProperty("content");
        AssertSameJson(search.Json, assistant[1]);
        AssertSameJson(results.Json, assistant[2]);
        Assert.Equal("web_search", Assert.Single(next.Tools).Name);
    }

    [DatabaseTheory]
    [InlineData(RunMode.Streaming)]
    [InlineData(RunMode.Batch)]
    public async Task WebSearchAnswer_CitedText_KeepsItsCitations_InTheMessage_TheWatchersEvent_AndTheNextRequest(RunMode mode)
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { ServerTools = [ServerTool.WebSearch(maxUses: 3)] });
        var search = FakeContentBlock.ServerToolUse("web_search", new { query = "claude shannon birth date" }, "srvtoolu_01Shannon");
        var results = FakeContentBlock.WebSearchToolResult("srvtoolu_01Shannon", ("https://en.wikipedia.org/wiki/Claude_Shannon", "Claude Shannon - Wikipedia"));
        var cited = FakeContentBlock.CitedText("Claude Shannon was born on April 30, 1916.",
            FakeCitation.WebSearchResultLocation("https://en.wikipedia.org/wiki/Claude_Shannon", "Claude Shannon - Wikipedia",
                "Claude Elwood Shannon (April 30, 1916 – February 24, 2001)"),
            FakeCitation.WebSearchResultLocation("https://example.org/bell-labs", null, "Shannon joined Bell Labs in 1941"));
        var requests = new ConcurrentQueue<FakeRequest>();
        h.Claude.Respond(request =>
        {
            requests.Enqueue(request);
            return request.LastUserText == "when was Shannon born?"
                ? FakeReply.Message(FakeContentBlock.Text("Let me search."), search, results, cited, FakeContentBlock.Text(" He died in 2001."))
                : FakeReply.Text("You asked before.");
        });
        var session = await h.Client.NewSessionAsync();
        var runId = mode == RunMode.Batch
            ? await h.Client.RunAsync(session, agent.Id, "when was Shannon born?")
            : await h.Client.RunFastAsync(session, agent.Id, "when was Shannon born?");

        var events = await Eventually.WithinAsync(WatchAsync(h.Client, runId), "the watch to end", s_runTimeout);

        var expected = JsonSerializer.SerializeToElement(cited.Citations);
        var stored = (await h.Client.GetMessagesAsync(session)).Single(m => m.Role == MessageRole.Assistant);
        Assert.Equal(["text", "server_tool_use", "web_search_tool_result", "text", "text"], stored.Content.Select(b => b.Type));
        AssertSameJson(expected, stored.Content[3].Raw!.Value.GetProperty("citations"));
        Assert.False(stored.Content[4].Raw!.Value.TryGetProperty("citations", out _), "an uncited block has no citations");
        var announced = Assert.Single(events.OfType<MessageStoredEvent>(), e => e.Message?.Role == MessageRole.Assistant).Message!;
        AssertSameJson(expected, announced.Content[3].Raw!.Value.GetProperty("citations"));

        // The next run sends the cited block back as Claude sent it (Claude checks the citations' fields).
        Assert.Equal("You asked before.", (await Eventually.WithinAsync(Run(h, mode, session, agent.Id, "and his death?"), "the second run", s_runTimeout)).Text);
        var sentBack = requests.Last().Messages[1].GetProperty("content");
        AssertSameJson(JsonSerializer.SerializeToElement(new JsonObject
        {
            ["type"] = "text", ["text"] = cited.Text, ["citations"] = JsonNode.Parse(expected.GetRawText()),
        }), sentBack[3]);
    }

    [DatabaseFact]
    public async Task GetMessagesAsync_ServerToolBlocks_ReadTyped_WithoutJson()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { ServerTools = [ServerTool.WebSearch(), ServerTool.WebFetch(citations: true), ServerTool.CodeExecution()] });
        var blocks = new FakeContentBlock[]
        {
            FakeContentBlock.ServerToolUse("web_search", new { query = "paris weather" }, "srvtoolu_01Search"),
            Raw("""{"type":"web_search_tool_result","tool_use_id":"srvtoolu_01Search","content":[{"type":"web_search_result","url":"https://example.org/paris","title":"Paris weather","encrypted_content":"RW5j","page_age":"April 30, 2025"},{"type":"web_search_result","url":"https://example.org/fr","title":"France","encrypted_content":"RW5k"}]}"""),
            FakeContentBlock.ServerToolUse("web_search", new { query = "more" }, "srvtoolu_01Search2"),
            Raw("""{"type":"web_search_tool_result","tool_use_id":"srvtoolu_01Search2","content":{"type":"web_search_tool_result_error","error_code":"max_uses_exceeded"}}"""),
            FakeContentBlock.ServerToolUse("web_fetch", new { url = "https://example.org/paris" }, "srvtoolu_01Fetch"),
            Raw("""{"type":"web_fetch_tool_result","tool_use_id":"srvtoolu_01Fetch","content":{"type":"web_fetch_result","url":"https://example.org/paris","retrieved_at":"2026-11-30T10:30:00Z","content":{"type":"document","source":{"type":"text","media_type":"text/plain","data":"Sunny, 21 °C."},"title":"Paris weather","citations":{"enabled":true}}}}"""),
            FakeContentBlock.ServerToolUse("bash_code_execution", new { command = "python3 -c 'print(6*7)'" }, "srvtoolu_01Bash"),
            Raw("""{"type":"bash_code_execution_tool_result","tool_use_id":"srvtoolu_01Bash","content":{"type":"bash_code_execution_result","stdout":"42\n","stderr":"","return_code":0,"content":[{"type":"bash_code_execution_output","file_id":"file_011CNha8iCJcU1wXNR6q4V8w"}]}}"""),
            FakeContentBlock.CitedText("It is sunny.",
                FakeCitation.WebSearchResultLocation("https://example.org/paris", "Paris weather", "Sunny"),
                FakeCitation.CharLocation(0, "Paris weather", "Sunny, 21 °C.", 0, 13)),
            Raw("""{"type":"future_tool_result","tool_use_id":"srvtoolu_01Future","content":{"b":2,"a":[1.50,"x"]}}"""),
        };
        h.Claude.Respond(_ => FakeReply.Message(blocks));
        var session = await h.Client.NewSessionAsync();

        await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "weather?"), "the run", s_runTimeout);

        var content = (await h.Client.GetMessagesAsync(session)).Single(m => m.Role == MessageRole.Assistant).Content;
        Assert.Equal(("web_search", "paris weather"), (content[0].ToolName, content[0].ToolInput!.Value.GetProperty("query").GetString()));
        Assert.Equal(
            [new WebSearchResult { Url = "https://example.org/paris", Title = "Paris weather", PageAge = "April 30, 2025" }, new WebSearchResult { Url = "https://example.org/fr", Title = "France" }],
            content[1].WebSearchResults);
        Assert.Equal(("srvtoolu_01Search", false, null), (content[1].ToolResultForUseId, content[1].IsError, content[1].ServerToolErrorCode));
        Assert.Equal((true, "max_uses_exceeded"), (content[3].IsError, content[3].ServerToolErrorCode));
        Assert.Empty(content[3].WebSearchResults);
        var page = content[5].WebFetchResult!;
        Assert.Equal(("https://example.org/paris", "Paris weather", "Sunny, 21 °C."), (page.Url, page.Title, page.Text));
        Assert.Equal(new DateTimeOffset(2026, 11, 30, 10, 30, 0, TimeSpan.Zero), page.RetrievedAt);
        Assert.Equal("document", page.Document!.Value.GetProperty("type").GetString());
        var run = content[7].CodeExecutionResult!;
        Assert.Equal(("42\n", "", 0), (run.Stdout, run.Stderr, run.ReturnCode));
        Assert.Equal(["file_011CNha8iCJcU1wXNR6q4V8w"], run.FileIds);
        Assert.Equal(
            [
                ("web_search_result_location", "Sunny", "https://example.org/paris", "Paris weather", null, null, null),
                ("char_location", "Sunny, 21 °C.", null, "Paris weather", 0, 0, 13),
            ],
            content[8].Citations.Select(c => (c.Type, c.CitedText, c.Url, c.Title, c.DocumentIndex, c.Start, c.End)));
        AssertSameJson(blocks[8] is FakeTextBlock t ? t.Citations[0] : default, content[8].Citations[0].Raw);
        Assert.All(content.Where(b => b.Type != "text"), b => Assert.Empty(b.Citations));
        // A block type this version does not know: nothing typed, and kept whole (sent back as it came).
        Assert.Equal(("srvtoolu_01Future", null, null, null), (content[9].ToolResultForUseId, content[9].WebFetchResult, content[9].CodeExecutionResult, content[9].ServerToolErrorCode));
        AssertSameJson(((FakeRawBlock)blocks[9]).Json, content[9].Raw!.Value);
        Assert.Contains("1.50", content[9].Raw!.Value.GetRawText(), StringComparison.Ordinal);
    }

    [DatabaseTheory]
    [InlineData(RunMode.Streaming)]
    [InlineData(RunMode.Batch)]
    public async Task WebSearchesAndFetches_AreRecordedPerIteration_AndCountedAndPricedByGetUsageAsync(RunMode mode)
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync(a => a with { Model = "claude-search-" + Guid.NewGuid().ToString("N")[..8], ServerTools = [ServerTool.WebSearch(), ServerTool.WebFetch()] });
        h.Claude.Respond(request => request.Messages[request.Messages.GetArrayLength() - 1].GetProperty("role").GetString() == "assistant"
            ? FakeReply.Text("Sunny.")
            : FakeReply.Message(
                FakeContentBlock.ServerToolUse("web_search", new { query = "paris" }, "srvtoolu_01A"),
                FakeContentBlock.WebSearchToolResult("srvtoolu_01A", ("https://example.org/paris", "Paris")),
                FakeContentBlock.ServerToolUse("web_search", new { query = "paris today" }, "srvtoolu_01B"),
                FakeContentBlock.WebSearchToolResult("srvtoolu_01B", ("https://example.org/today", "Today")),
                FakeContentBlock.ServerToolUse("web_fetch", new { url = "https://example.org/today" }, "srvtoolu_01C"),
                Raw("""{"type":"web_fetch_tool_result","tool_use_id":"srvtoolu_01C","content":{"type":"web_fetch_tool_error","error_code":"url_not_accessible"}}""")) with
            {
                StopReason = FakeStopReason.PauseTurn,
            });
        var session = await h.Client.NewSessionAsync();

        var response = await Eventually.WithinAsync(Run(h, mode, session, agent.Id, "weather?"), "the run", s_runTimeout);

        var iterations = await h.Client.GetIterationsAsync(response.RunId);
        Assert.Equal([(2L, 1L), (0L, 0L)], iterations.Select(i => (i.ServerToolUse.WebSearchRequests, i.ServerToolUse.WebFetchRequests)));
        var price = new ModelPrice(3m, 15m, 3.75m, 6m, 0.3m);
        var report = await h.Client.GetUsageAsync(new UsageQuery { SessionId = session, Prices = new Dictionary<string, ModelPrice> { [agent.Model] = price } });
        var free = await h.Client.GetUsageAsync(new UsageQuery
        {
            SessionId = session, Prices = new Dictionary<string, ModelPrice> { [agent.Model] = price with { WebSearchPerThousand = 0m } },
        });
        Assert.Equal((2L, 1L), (report.Total.WebSearchRequests, report.Total.WebFetchRequests));
        // Two searches at US$10 per 1 000, batched or not; the fetch costs its tokens only.
        Assert.Equal(0.02m, report.Total.Cost - free.Total.Cost);
        Assert.Equal(0.02m, report.Total.CostWithoutDiscounts - free.Total.CostWithoutDiscounts);
    }

    [DatabaseTheory]
    [InlineData(RunMode.Streaming)]
    [InlineData(RunMode.Batch)]
    public async Task ToolSearch_DefersTheClientToolsAndDelegates_AndReplaysTheToolReferences(RunMode mode)
    {
        await using var h = await Harness.StartAsync(db, tools:
        [
            new TestTool("lookup"),
            new TestTool("get_weather", (_, input, _) => Task.FromResult("sunny in " + input.GetProperty("city").GetString())),
            new TestTool("get_stock"),
        ]);
        var helper = await h.AgentAsync(a => a with { Name = "helper_" + Guid.NewGuid().ToString("N")[..8], Description = "Helps." });
        var agent = await h.AgentAsync(a => a with
        {
            Tools = ["lookup", "get_weather", "get_stock"],
            AgentIds = [helper.Id],
            ServerTools = [ServerTool.ToolSearch(ToolSearchKind.Bm25, alwaysLoadedTools: ["lookup"]), ServerTool.WebSearch()],
        });
        var searchCall = FakeContentBlock.ServerToolUse("tool_search_tool_bm25", new { query = "weather" }, "srvtoolu_01ToolSearch");
        var found = FakeContentBlock.ToolSearchToolResult("srvtoolu_01ToolSearch", "get_weather");
        var requests = new ConcurrentQueue<FakeRequest>();
        h.Claude.Respond(request =>
        {
            requests.Enqueue(request);
            return request.ToolResults.Count == 0
                ? FakeReply.Message(searchCall, found, FakeContentBlock.ToolUse("get_weather", new { city = "Paris" })) with { StopReason = FakeStopReason.ToolUse }
                : FakeReply.Text("It is " + request.ToolResults[0].Content + ".");
        });

        var response = await Eventually.WithinAsync(Run(h, mode, await h.Client.NewSessionAsync(), agent.Id, "weather in Paris?"), "the run", s_runTimeout);

        Assert.Equal("It is sunny in Paris.", response.Text);
        var first = requests.First();
        Assert.Equal(
            [("get_stock", true), ("get_weather", true), ("lookup", false), (helper.Name, true), ("tool_search_tool_bm25", false), ("web_search", false)],
            first.Tools.Select(t => (t.Name, t.DeferLoading)));
        // The tool search result, with its tool_reference, went back as Claude sent it.
        var second = requests.ElementAt(1).Messages;
        var assistant = second[1].GetProperty("content");
        Assert.Equal(["server_tool_use", "tool_search_tool_result", "tool_use"], assistant.EnumerateArray().Select(b => b.GetProperty("type").GetString()));
        AssertSameJson(searchCall.Json, assistant[0]);
        AssertSameJson(found.Json, assistant[1]);
        Assert.Equal("get_weather", assistant[1].GetProperty("content").GetProperty("tool_references")[0].GetProperty("tool_name").GetString());
        Assert.Equal(first.Tools.Select(t => t.Json.GetRawText()), requests.ElementAt(1).Tools.Select(t => t.Json.GetRawText()));
    }

    [DatabaseFact]
    public async Task PromptCache_WithServerToolsAndNoSystemPrompt_TheToolsPrefixIsWrittenOnceThenRead()
    {
        // The tools are the start of the cached prefix: the breakpoint goes on the last tool that is loaded (the tool search
        // tool here; "rare" is deferred), and the same definitions on the next call read the prefix back.
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("big") { Description = string.Concat(Enumerable.Repeat("A tool with a long manual. ", 400)) }, new TestTool("rare")]);
        var agent = await h.AgentAsync(a => a with
        {
            SystemPrompt = null, Tools = ["big", "rare"],
            ServerTools = [ServerTool.WebSearch(maxUses: 2), ServerTool.ToolSearch(ToolSearchKind.Regex, ["big"])],
        });
        var requests = new ConcurrentQueue<FakeRequest>();
        h.Claude.Respond(request =>
        {
            requests.Enqueue(request);
            return FakeReply.Text("ok");
        });
        var session = await h.Client.NewSessionAsync();

        var first = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "one"), "the first run", s_runTimeout);
        var second = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "two"), "the second run", s_runTimeout);

        var tools = requests.First().Tools;
        Assert.Equal(["big", "rare", "web_search", "tool_search_tool_regex"], tools.Select(t => t.Name));
        Assert.Equal([false, false, false, true], tools.Select(t => t.Json.TryGetProperty("cache_control", out _)));
        Assert.True(first.Usage.CacheCreationInputTokens > 1000, $"the first call wrote {first.Usage.CacheCreationInputTokens} tokens to the cache");
        Assert.True(second.Usage.CacheReadInputTokens >= first.Usage.CacheCreationInputTokens,
            $"the second call read {second.Usage.CacheReadInputTokens} cached tokens; the first wrote {first.Usage.CacheCreationInputTokens}");
    }

    private static Task<Response> Run(Harness h, RunMode mode, Guid session, Guid agentId, string prompt) => mode == RunMode.Batch
        ? h.Client.RunSyncAsync(session, agentId, prompt)
        : h.Client.RunFastSyncAsync(session, agentId, prompt);

    private static async Task<List<RunEvent>> WatchAsync(AgentPgClient client, Guid runId)
    {
        var events = new List<RunEvent>();
        await foreach (var e in client.WatchRunAsync(runId))
        {
            events.Add(e);
        }

        return events;
    }

    private static FakeRawBlock Raw(string json) => FakeContentBlock.Raw(JsonDocument.Parse(json).RootElement);

    private static ServerTool Json(string json) => ServerTool.FromJson(JsonDocument.Parse(json).RootElement);

    private static void AssertSameJson(JsonElement expected, JsonElement actual)
        => Assert.True(JsonNode.DeepEquals(JsonNode.Parse(expected.GetRawText()), JsonNode.Parse(actual.GetRawText())),
            $"expected {expected.GetRawText()}\nbut Claude was sent {actual.GetRawText()}");
}
