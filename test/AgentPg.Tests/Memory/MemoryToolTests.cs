using System.Collections.Concurrent;
using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Memory;

/// <summary>Claude's memory tool (AgentDefinition.Memory) end to end: the fake Claude calls <c>memory</c> with the commands of
/// each run's script (the run's prompt names the script), and the tests read the tool_results it received.</summary>
public sealed class MemoryToolTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    /// <summary>The commands each prompt's run makes, one per model call, and the tool_results Claude received for them.</summary>
    private sealed class Scripts
    {
        private readonly ConcurrentDictionary<string, object[]> _commands = new(StringComparer.Ordinal);

        public ConcurrentDictionary<string, ConcurrentQueue<FakeToolResult>> Results { get; } = new(StringComparer.Ordinal);

        /// <summary>Before answering a model call of a prompt's run (after its model call number <c>index</c> was counted).</summary>
        public Func<string, int, Task>? BeforeCall { get; set; }

        public string Add(params object[] commands)
        {
            var prompt = "script " + Guid.NewGuid().ToString("N")[..8];
            _commands[prompt] = commands;
            Results[prompt] = new();
            return prompt;
        }

        public async Task<FakeReply?> RespondAsync(FakeRequest request)
        {
            var messages = request.Messages.EnumerateArray().ToList();
            var content = messages[0].GetProperty("content");
            var prompt = content.ValueKind == JsonValueKind.String ? content.GetString()! : content[0].GetProperty("text").GetString()!;
            if (!_commands.TryGetValue(prompt, out var commands))
            {
                return FakeReply.Text("no script");
            }

            foreach (var result in request.ToolResults)
            {
                Results[prompt].Enqueue(result);
            }

            var index = messages.Count(m => m.GetProperty("role").GetString() == "assistant");
            if (BeforeCall is { } before)
            {
                await before(prompt, index);
            }

            return index < commands.Length
                ? FakeReply.Message(FakeContentBlock.Memory(commands[index])) with { StopReason = "tool_use" }
                : FakeReply.Text("done");
        }
    }

    private async Task<(Harness H, Scripts Scripts)> StartAsync(Action<AgentPgOptions>? configure = null)
    {
        var h = await Harness.StartAsync(db, configure);
        var scripts = new Scripts();
        h.Claude.Respond((request, _) => scripts.RespondAsync(request));
        return (h, scripts);
    }

    /// <summary>Runs the commands in a run of <paramref name="agent"/> (in <paramref name="session"/>, or a new one) and returns
    /// the tool_results Claude received, in order.</summary>
    private static async Task<List<FakeToolResult>> RunAsync(Harness h, Scripts scripts, AgentDefinition agent, Guid? session, params object[] commands)
    {
        var prompt = scripts.Add(commands);
        var runId = await h.Client.RunFastAsync(session ?? await h.Client.NewSessionAsync(), agent.Id, prompt);
        var response = await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the memory run", s_timeout);
        Assert.Equal("done", response.Text);
        return [.. scripts.Results[prompt]];
    }

    private static object View(string path = "/memories") => new { command = "view", path };

    private static object Create(string path, string text) => new { command = "create", path, file_text = text };

    [DatabaseFact]
    public async Task Run_EachCommand_ClaudeReceivesTheProtocolsResults_AndTheStoreHoldsTheOutcome()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = [] });

        var results = await RunAsync(h, scripts, agent, null,
            View(),
            Create("/memories/notes.md", "coffee: black\ntea: green\n"),
            new { command = "str_replace", path = "/memories/notes.md", old_str = "tea: green", new_str = "tea: none" },
            new { command = "insert", path = "/memories/notes.md", insert_line = 0, insert_text = "# Preferences" },
            View("/memories/notes.md"),
            new { command = "view", path = "/memories/notes.md", view_range = new[] { 2, 3 } },
            Create("/memories/projects/agentpg/status.md", "landed"),
            View(),
            new { command = "rename", old_path = "/memories/projects", new_path = "/memories/archive" },
            new { command = "delete", path = "/memories/notes.md" },
            View());

        Assert.All(results, r => Assert.False(r.IsError, r.Content));
        Assert.Equal(
        [
            "Here're the files and directories up to 2 levels deep in /memories, excluding hidden items:\n0B\t/memories",
            "File created successfully at: /memories/notes.md",
            "The memory file has been edited. Here is the snippet showing the change (with line numbers):\n     1\tcoffee: black\n     2\ttea: none\n     3\t",
            "The file /memories/notes.md has been edited.",
            "Here's the content of /memories/notes.md with line numbers:\n     1\t# Preferences\n     2\tcoffee: black\n     3\ttea: none\n     4\t",
            "Here's the content of /memories/notes.md with line numbers:\n     2\tcoffee: black\n     3\ttea: none",
            "File created successfully at: /memories/projects/agentpg/status.md",
            "Here're the files and directories up to 2 levels deep in /memories, excluding hidden items:\n44B\t/memories\n38B\t/memories/notes.md\n6B\t/memories/projects/\n6B\t/memories/projects/agentpg/",
            "Successfully renamed /memories/projects to /memories/archive",
            "Successfully deleted /memories/notes.md",
            "Here're the files and directories up to 2 levels deep in /memories, excluding hidden items:\n6B\t/memories\n6B\t/memories/archive/\n6B\t/memories/archive/agentpg/",
        ], results.Select(r => r.Content));

        var file = Assert.Single(await h.Client.ListMemoryFilesAsync(MemoryStoreId.ForAgent(agent.Id)));
        Assert.Equal("/memories/archive/agentpg/status.md", file.Path);
        Assert.Equal("landed", file.Content);
        Assert.Equal(6, file.SizeBytes);
    }

    [DatabaseFact]
    public async Task Run_MemoryAgent_SendsTheTypedMemoryToolWithoutABeta_AndAnAgentWithoutMemoryDoesNotGetIt()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var withMemory = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = [] });
        var without = await h.AgentAsync(a => a with { Tools = [] });
        var requests = new ConcurrentQueue<FakeRequest>();
        scripts.BeforeCall = (_, _) => Task.CompletedTask;
        h.Claude.Respond((request, _) =>
        {
            requests.Enqueue(request);
            return scripts.RespondAsync(request);
        });

        await RunAsync(h, scripts, withMemory, null, View());
        var memoryRequests = requests.ToList();
        requests.Clear();
        await RunAsync(h, scripts, without, null);

        Assert.All(memoryRequests, r =>
        {
            var tool = Assert.Single(r.Tools);
            Assert.Equal("memory", tool.Name);
            Assert.Equal("memory_20250818", tool.ServerToolType);
            Assert.Empty(r.Betas);
        });
        Assert.Empty(Assert.Single(requests).Tools);
    }

    [DatabaseFact]
    public async Task Run_BadPathsAndCommands_AnswerToolErrorsClaudeCanActOn_AndTheRunCompletesWithNothingWritten()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = [] });

        var results = await RunAsync(h, scripts, agent, null,
            Create("/memories/../etc/passwd", "x"),
            Create("/memories/%2e%2e/secrets", "x"),
            Create("/etc/passwd", "x"),
            Create("/memories\\..\\x", "x"),
            Create("/memories/a\u0000b", "x"),
            Create("/memories/" + new string('a', 1100), "x"),
            View("/memories/missing.md"),
            new { command = "delete", path = "/memories" },
            new { command = "format", path = "/memories" },
            new { command = "create", path = "/memories/x.md" },
            Create("/memories/x.md", "one"),
            Create("/memories/x.md", "two"),
            new { command = "str_replace", path = "/memories/x.md", old_str = "zzz", new_str = "y" },
            new { command = "insert", path = "/memories/x.md", insert_line = 5, insert_text = "y" });

        Assert.Equal(
        [
            (true, "Path /memories/../etc/passwd would escape /memories directory"),
            (true, "Path /memories/%2e%2e/secrets would escape /memories directory"),
            (true, "Path must start with /memories, got: /etc/passwd"),
            (true, "The path /memories\\..\\x contains a backslash; separate directories with /."),
            (true, "The path /memories/a?b contains a control, invisible or invalid character; use printable characters only."),
            (true, "The path is 1110 characters long; memory paths are at most 1024 characters."),
            (true, "The path /memories/missing.md does not exist. Please provide a valid path."),
            (true, "Cannot delete the /memories directory itself"),
            (true, "Unknown command: format. Use one of view, create, str_replace, insert, delete, rename."),
            (true, "Missing required parameter `file_text` for command `create`: a string."),
            (false, "File created successfully at: /memories/x.md"),
            (true, "File /memories/x.md already exists"),
            (true, "No replacement was performed, old_str `zzz` did not appear verbatim in /memories/x.md."),
            (true, "Invalid `insert_line` parameter: 5. It should be within the range [0, 1]."),
        ], results.Select(r => (r.IsError, r.Content)));
        var file = Assert.Single(await h.Client.ListMemoryFilesAsync(MemoryStoreId.ForAgent(agent.Id)));
        Assert.Equal(("/memories/x.md", "one"), (file.Path, file.Content));
    }

    [DatabaseFact]
    public async Task Run_OverTheFileOrStoreLimit_AnswersAToolError_AndChangesNothing()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent with { MaxFileBytes = 100, MaxStoreBytes = 150 }, Tools = [] });

        var results = await RunAsync(h, scripts, agent, null,
            Create("/memories/big.md", new string('x', 101)),
            Create("/memories/a.md", new string('a', 90)),
            Create("/memories/b.md", new string('b', 90)),
            new { command = "str_replace", path = "/memories/a.md", old_str = new string('a', 90), new_str = new string('A', 106) });

        Assert.Equal(
        [
            (true, "Nothing was changed: /memories/big.md would be 101 bytes, and a memory file may hold at most 100 bytes. Keep it shorter, or split it into several files."),
            (false, "File created successfully at: /memories/a.md"),
            (true, "Nothing was changed: the memory would hold 208 bytes, and it may hold at most 150 bytes (paths and contents). Delete or shorten files you no longer need first."),
            (true, "Nothing was changed: /memories/a.md would be 106 bytes, and a memory file may hold at most 100 bytes. Keep it shorter, or split it into several files."),
        ], results.Select(r => (r.IsError, r.Content)));
        var file = Assert.Single(await h.Client.ListMemoryFilesAsync(MemoryStoreId.ForAgent(agent.Id)));
        Assert.Equal(new string('a', 90), file.Content);
    }

    [DatabaseFact]
    public async Task Run_MemoryPerTenant_TenantsNeverSeeEachOthersNotes_AndASessionWithoutTheKeyGetsAToolError()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerSessionMetadata("tenant_id"), Tools = [] });
        var acme = await h.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant_id"] = "acme" });
        var acmeAgain = await h.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant_id"] = "acme" });
        var globex = await h.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant_id"] = "globex" });
        var nobody = await h.Client.NewSessionAsync();

        await RunAsync(h, scripts, agent, acme, Create("/memories/customer.md", "acme pays late"));
        var sameTenant = await RunAsync(h, scripts, agent, acmeAgain, View("/memories/customer.md"));
        var otherTenant = await RunAsync(h, scripts, agent, globex, View("/memories/customer.md"), View());
        var noTenant = await RunAsync(h, scripts, agent, nobody, View());

        Assert.Equal("Here's the content of /memories/customer.md with line numbers:\n     1\tacme pays late", Assert.Single(sameTenant).Content);
        Assert.Equal(
            ["The path /memories/customer.md does not exist. Please provide a valid path.",
             "Here're the files and directories up to 2 levels deep in /memories, excluding hidden items:\n0B\t/memories"],
            otherTenant.Select(r => r.Content));
        Assert.True(Assert.Single(noTenant).IsError);
        Assert.Contains("session metadata key 'tenant_id'", noTenant[0].Content, StringComparison.Ordinal);
        Assert.Single(await h.Client.ListMemoryFilesAsync(MemoryStoreId.ForSessionMetadata(agent.Id, "tenant_id", "acme")));
        Assert.Empty(await h.Client.ListMemoryFilesAsync(MemoryStoreId.ForSessionMetadata(agent.Id, "tenant_id", "globex")));
    }

    [DatabaseFact]
    public async Task Run_MemoryPerSession_ANewSessionStartsEmpty_AndDeletingTheSessionDeletesItsStore()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerSession, Tools = [] });
        var first = await h.Client.NewSessionAsync();

        await RunAsync(h, scripts, agent, first, Create("/memories/a.md", "first session"));
        var second = await RunAsync(h, scripts, agent, null, View("/memories/a.md"));

        Assert.True(Assert.Single(second).IsError);
        Assert.Single(await h.Client.ListMemoryFilesAsync(MemoryStoreId.ForSession(agent.Id, first)));
        await h.Client.DeleteSessionAsync(first);
        Assert.Empty(await h.Client.ListMemoryFilesAsync(MemoryStoreId.ForSession(agent.Id, first)));
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_memory_stores WHERE session_id = $1", first));
    }

    [DatabaseFact]
    public async Task ClientMethods_SeedReadListDeleteClear_AndClaudeSeesTheSeed()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = [] });
        var store = MemoryStoreId.ForAgent(agent.Id);

        await h.Client.WriteMemoryFileAsync(store, "/memories/style.md", "answer in French");
        await h.Client.WriteMemoryFileAsync(store, "/memories//team/./alice.md/", "likes tea");
        var seen = await RunAsync(h, scripts, agent, null, View("/memories/style.md"));
        await h.Client.WriteMemoryFileAsync(store, "/memories/style.md", "answer in German");

        Assert.Equal("Here's the content of /memories/style.md with line numbers:\n     1\tanswer in French", Assert.Single(seen).Content);
        Assert.Equal(["/memories/style.md", "/memories/team/alice.md"], (await h.Client.ListMemoryFilesAsync(store)).Select(f => f.Path));
        Assert.Equal("answer in German", (await h.Client.ReadMemoryFileAsync(store, "/memories/style.md"))!.Content);
        Assert.Null(await h.Client.ReadMemoryFileAsync(store, "/memories/none.md"));
        await Assert.ThrowsAsync<ArgumentException>(() => h.Client.ReadMemoryFileAsync(store, "/memories/../x"));
        await Assert.ThrowsAsync<ArgumentException>(() => h.Client.WriteMemoryFileAsync(store, "/memories/team", "x"));
        var missing = await Assert.ThrowsAsync<AgentPgException>(() => h.Client.WriteMemoryFileAsync(MemoryStoreId.ForAgent(Guid.NewGuid()), "/memories/x.md", "x"));
        Assert.Equal(AgentPgErrorCode.AgentNotFound, missing.Code);

        Assert.Equal(1, await h.Client.DeleteMemoryFileAsync(store, "/memories/team"));
        Assert.Equal(0, await h.Client.DeleteMemoryFileAsync(store, "/memories/team"));
        Assert.Equal(1, await h.Client.ClearMemoryAsync(store));
        Assert.Empty(await h.Client.ListMemoryFilesAsync(store));
    }

    [DatabaseFact]
    public async Task Run_ConcurrentWritersOfOneStore_FromManySessions_LoseNoUpdate()
    {
        const int writers = 6;
        var (h, scripts) = await StartAsync(o => o.MaxConcurrentStreamingRuns = writers);
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = [] });
        await h.Client.WriteMemoryFileAsync(MemoryStoreId.ForAgent(agent.Id), "/memories/log.md", "");
        // Every run's first model call waits for all of them: their insert commands reach the tool worker together.
        var arrived = 0;
        var all = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        scripts.BeforeCall = async (_, index) =>
        {
            if (index == 0)
            {
                if (Interlocked.Increment(ref arrived) == writers)
                {
                    all.TrySetResult();
                }

                await all.Task.WaitAsync(s_timeout);
            }
        };

        var runs = Enumerable.Range(1, writers)
            .Select(i => RunAsync(h, scripts, agent, null, new { command = "insert", path = "/memories/log.md", insert_line = 0, insert_text = "writer " + i }))
            .ToList();
        var results = await Task.WhenAll(runs);

        Assert.All(results, r => Assert.Equal("The file /memories/log.md has been edited.", Assert.Single(r).Content));
        var lines = (await h.Client.ReadMemoryFileAsync(MemoryStoreId.ForAgent(agent.Id), "/memories/log.md"))!.Content.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(Enumerable.Range(1, writers).Select(i => "writer " + i).Order(), lines.Order());
    }

    [DatabaseFact]
    public async Task Run_ResultCommitFails_TheCommandsChangeRollsBackWithIt_AndTheRetryAppliesItExactlyOnce()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = [] });
        // The first recording of a memory call's result fails inside the tool's transaction, after the command's change: a
        // sequence is not transactional, so only the first attempt fails.
        var trigger = "fail_" + Guid.NewGuid().ToString("N")[..8];
        await db.ExecuteAsync($"CREATE SEQUENCE {{schema}}.{trigger}_seq");
        await using var fail = await db.TriggerAsync(trigger, "BEFORE UPDATE", "agentpg_tool_executions", $$"""
            IF NEW.is_memory_tool AND NEW.state = 'completed' AND nextval('{schema}.{{trigger}}_seq') = 1 THEN
                RAISE EXCEPTION 'injected failure of the result''s commit';
            END IF;
            RETURN NEW;
            """);
        var prompt = scripts.Add(new { command = "insert", path = "/memories/count.md", insert_line = 0, insert_text = "one more" });
        await h.Client.WriteMemoryFileAsync(MemoryStoreId.ForAgent(agent.Id), "/memories/count.md", "start\n");
        var runId = await h.Client.RunFastAsync(await h.Client.NewSessionAsync(), agent.Id, prompt);
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the memory run", s_timeout);

        var call = Assert.Single(await h.Client.GetRunToolCallsAsync(runId));
        Assert.Equal(ToolExecutionState.Completed, call.State);
        Assert.Equal(2, await db.ScalarAsync<int>("SELECT attempt_count FROM {schema}.agentpg_tool_executions WHERE run_id = $1", runId));
        Assert.Equal("The file /memories/count.md has been edited.", Assert.Single(scripts.Results[prompt]).Content);
        Assert.Equal("one more\nstart\n", (await h.Client.ReadMemoryFileAsync(MemoryStoreId.ForAgent(agent.Id), "/memories/count.md"))!.Content);
    }

    [DatabaseFact]
    public async Task Run_MemoryRequiringApproval_WaitsForTheDecision_ThenRunsTheApprovedCommand()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = [], ToolsRequiringApproval = ["memory"] });
        var session = await h.Client.NewSessionAsync();
        var prompt = scripts.Add(Create("/memories/a.md", "claude's text"));
        var runId = await h.Client.RunFastAsync(session, agent.Id, prompt);

        await Eventually.TrueAsync(async () => (await h.Client.GetPendingApprovalsAsync(session)).Count == 1, "the memory call to wait for approval");
        var request = Assert.Single(await h.Client.GetPendingApprovalsAsync(session));
        Assert.Equal("memory", request.ToolName);
        Assert.Empty(await h.Client.ListMemoryFilesAsync(MemoryStoreId.ForAgent(agent.Id)));
        await h.Client.ApproveToolCallAsync(request.ToolExecutionId,
            JsonSerializer.SerializeToElement(new { command = "create", path = "/memories/a.md", file_text = "approved text" }));
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);

        Assert.Equal("approved text", (await h.Client.ReadMemoryFileAsync(MemoryStoreId.ForAgent(agent.Id), "/memories/a.md"))!.Content);
    }

    [DatabaseFact]
    public async Task CreateAgent_MemoryWithAToolNamedMemory_OrBadLimits_IsRefusedWithTheFix()
    {
        await using var h = await Harness.StartAsync(db, start: false);

        var tools = await Assert.ThrowsAsync<ArgumentException>(() => h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = ["memory"] }));
        var limits = await Assert.ThrowsAsync<ArgumentException>(() => h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent with { MaxFileBytes = 0 } }));
        var stored = await h.AgentAsync(a => a with { Memory = AgentMemory.PerSessionMetadata("tenant") with { MaxStoreBytes = 5000 }, Tools = ["x"], ToolsRequiringApproval = ["memory"] });

        Assert.Contains("Remove it from Tools", tools.Message, StringComparison.Ordinal);
        Assert.Contains("must be positive", limits.Message, StringComparison.Ordinal);
        var read = await h.Client.GetAgentByIdAsync(stored.Id);
        Assert.Equal(AgentMemory.PerSessionMetadata("tenant") with { MaxStoreBytes = 5000 }, read.Memory);
    }

    [DatabaseFact]
    public async Task Run_ViewOfADirectoryOfManyFiles_IsCutAtMaxToolOutputLength()
    {
        var (h, scripts) = await StartAsync(o => o.MaxToolOutputLength = 1000);
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = [] });
        for (var i = 0; i < 60; i++)
        {
            await h.Client.WriteMemoryFileAsync(MemoryStoreId.ForAgent(agent.Id), $"/memories/customers/customer-{i:D3}.md", "x");
        }

        var listing = Assert.Single(await RunAsync(h, scripts, agent, null, View()));

        Assert.False(listing.IsError);
        Assert.StartsWith("Here're the files and directories up to 2 levels deep in /memories", listing.Content, StringComparison.Ordinal);
        Assert.InRange(listing.Content.Length, 1000, 1200);
        Assert.DoesNotContain("customer-059", listing.Content, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Run_MemoryPerTenant_ANumberOrBooleanValueNamesTheStoreByItsJsonText_AndANullValueHasNoMemory()
    {
        var (h, scripts) = await StartAsync();
        await using var _ = h;
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerSessionMetadata("tenant_id"), Tools = [] });
        var number = await h.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant_id"] = 42 });
        var boolean = await h.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant_id"] = true });
        var none = await h.Client.NewSessionAsync(metadata: new Dictionary<string, object?> { ["tenant_id"] = null });

        await RunAsync(h, scripts, agent, number, Create("/memories/a.md", "forty-two"));
        await RunAsync(h, scripts, agent, boolean, Create("/memories/a.md", "true"));
        var nullValue = Assert.Single(await RunAsync(h, scripts, agent, none, View()));

        Assert.Equal("forty-two", (await h.Client.ReadMemoryFileAsync(MemoryStoreId.ForSessionMetadata(agent.Id, "tenant_id", "42"), "/memories/a.md"))?.Content);
        Assert.Equal("true", (await h.Client.ReadMemoryFileAsync(MemoryStoreId.ForSessionMetadata(agent.Id, "tenant_id", "true"), "/memories/a.md"))?.Content);
        Assert.True(nullValue.IsError);
        Assert.Contains("session metadata key 'tenant_id'", nullValue.Content, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Approve_EditedMemoryCommand_IsCheckedAsAMemoryCommand_EvenWithAnInstanceToolNamedMemory()
    {
        // Agents without a memory may use an instance tool named memory; an approver's edit of Claude's memory command was checked
        // against that tool's schema (and refused), and a path out of /memories was accepted, to fail only when the tool ran.
        var other = new TestTool("memory", schema: new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["key"] = new() { Type = "string" } }, Required = ["key"] });
        var h = await Harness.StartAsync(db, tools: other);
        await using var _ = h;
        var scripts = new Scripts();
        h.Claude.Respond((request, _) => scripts.RespondAsync(request));
        var agent = await h.AgentAsync(a => a with { Memory = AgentMemory.PerAgent, Tools = null, ToolsRequiringApproval = ["memory"] });
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, scripts.Add(Create("/memories/a.md", "claude's text")));
        await Eventually.TrueAsync(async () => (await h.Client.GetPendingApprovalsAsync(session)).Count == 1, "the memory call to wait for approval");
        var request = Assert.Single(await h.Client.GetPendingApprovalsAsync(session));

        var outside = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId,
            JsonSerializer.SerializeToElement(new { command = "create", path = "/etc/passwd", file_text = "x" })));
        var unknown = await Assert.ThrowsAsync<ArgumentException>(() => h.Client.ApproveToolCallAsync(request.ToolExecutionId,
            JsonSerializer.SerializeToElement(new { command = "format", path = "/memories" })));
        await h.Client.ApproveToolCallAsync(request.ToolExecutionId,
            JsonSerializer.SerializeToElement(new { command = "create", path = "/memories/b.md", file_text = "approved text" }));
        await Eventually.WithinAsync(h.Client.WaitForRunAsync(runId), "the approved run", s_timeout);

        Assert.Contains("Path must start with /memories, got: /etc/passwd", outside.Message, StringComparison.Ordinal);
        Assert.Contains("still waits for a decision", outside.Message, StringComparison.Ordinal);
        Assert.Contains("Unknown command: format", unknown.Message, StringComparison.Ordinal);
        var file = Assert.Single(await h.Client.ListMemoryFilesAsync(MemoryStoreId.ForAgent(agent.Id)));
        Assert.Equal(("/memories/b.md", "approved text"), (file.Path, file.Content));
    }
}
