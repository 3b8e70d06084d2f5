using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Cli;

/// <summary>The agentpg commands run in-process against the test database and the fake Claude: output, --json and exit codes.</summary>
public sealed class CliTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    /// <summary>Nothing listens on port 1 of the loopback: connecting is refused at once.</summary>
    private const string Unreachable = "Host=127.0.0.1;Port=1;Username=postgres;Database=postgres;Timeout=5";

    private static JsonElement Json(CliResult result)
    {
        Assert.True(result.ExitCode == 0, result.ToString());
        using var document = JsonDocument.Parse(result.Output);
        return document.RootElement.Clone();
    }

    private static void AssertOneLineError(CliResult result, int exitCode, string contains)
    {
        Assert.True(result.ExitCode == exitCode, $"expected exit code {exitCode}: {result}");
        var lines = result.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.True(lines.Length == 1, $"expected one line of error: {result}");
        Assert.StartsWith("error: ", lines[0], StringComparison.Ordinal);
        Assert.Contains(contains, lines[0], StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Error, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Migrate_FreshSchema_StatusShowsPendingThenMigratesThenUpToDate()
    {
        var schema = SchemaFixture.NewSchemaName();
        try
        {
            var before = await CliRunner.RunAsync(schema, "migrate", "status");
            Assert.True(before.ExitCode == 3, before.ToString());
            Assert.Contains("Current  0 (not migrated)", before.Output, StringComparison.Ordinal);
            Assert.Contains("Pending  001", before.Output, StringComparison.Ordinal);

            var notMigrated = await CliRunner.RunAsync(schema, "runs", "list");
            AssertOneLineError(notMigrated, 1, $"schema \"{schema}\"");
            Assert.Contains("is not migrated: run 'agentpg migrate", notMigrated.Error, StringComparison.Ordinal);

            var migrated = await CliRunner.RunAsync(schema, "migrate", "--json");
            var report = Json(migrated);
            Assert.Equal(0, report.GetProperty("from").GetInt32());
            Assert.Equal(AgentPgMigrator.LatestVersion, report.GetProperty("version").GetInt32());
            Assert.True(report.GetProperty("changed").GetBoolean());

            var again = await CliRunner.RunAsync(schema, "migrate");
            Assert.True(again.ExitCode == 0, again.ToString());
            Assert.Contains("nothing to do", again.Output, StringComparison.Ordinal);

            var status = Json(await CliRunner.RunAsync(schema, "migrate", "status", "--json"));
            Assert.Equal(AgentPgMigrator.LatestVersion, status.GetProperty("current").GetInt32());
            Assert.True(status.GetProperty("upToDate").GetBoolean());
            Assert.Equal(0, status.GetProperty("pending").GetArrayLength());

            var rolledBack = await CliRunner.RunAsync(schema, "migrate", "--to", "0");
            Assert.True(rolledBack.ExitCode == 0, rolledBack.ToString());
            Assert.Equal(0, await new AgentPgMigrator(db.DataSource, schema).GetVersionAsync());

            var tooFar = await CliRunner.RunAsync(schema, "migrate", "--to", (AgentPgMigrator.LatestVersion + 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
            AssertOneLineError(tooFar, 2, "--to");
        }
        finally
        {
            await using var drop = db.DataSource.CreateCommand($"DROP SCHEMA IF EXISTS \"{schema}\" CASCADE");
            await drop.ExecuteNonQueryAsync();
        }
    }

    [Theory]
    [InlineData("status")]
    [InlineData("migrate")]
    [InlineData("migrate", "status")]
    [InlineData("agents", "list")]
    [InlineData("runs", "list", "--json")]
    [InlineData("approvals", "list")]
    public async Task Commands_UnreachableDatabase_OneLineErrorAndExitCode1(params string[] command)
    {
        var result = await CliRunner.RunRawAsync(["--connection", Unreachable, .. command]);

        AssertOneLineError(result, 1, "cannot connect to PostgreSQL at 127.0.0.1:1/postgres");
        Assert.Equal("", result.Output);
    }

    [Fact]
    public async Task Commands_UnreachableDatabaseWithVerbose_AddTheException()
    {
        var result = await CliRunner.RunRawAsync(["--connection", Unreachable, "--verbose", "status"]);

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("cannot connect to PostgreSQL", result.Error, StringComparison.Ordinal);
        Assert.Contains("   at ", result.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Commands_NoConnection_UsageError()
    {
        // Not through the environment: AGENTPG_CONNECTION may be set where the tests run; an empty --connection falls back to
        // it, so this test passes a connection string that is not valid instead.
        var result = await CliRunner.RunRawAsync(["--connection", "Host=127.0.0.1;NoSuchKeyword=1", "status"]);

        AssertOneLineError(result, 2, "the connection string is not valid");
    }

    [Theory]
    [InlineData("runs", "show", "not-a-guid")]
    [InlineData("runs", "list", "--state", "bogus")]
    [InlineData("runs", "list", "--since", "yesterday-ish")]
    [InlineData("runs", "list", "--since", "100000000d")]
    [InlineData("runs", "list", "--since", "Infinityh")]
    [InlineData("runs", "frobnicate")]
    [InlineData("serve", "--urls", "notaurl")]
    [InlineData("serve", "--urls", ";")]
    [InlineData("approvals", "reject", "3f2504e0-4f89-11d3-9a0c-0305e82c3301")]
    public async Task Commands_BadArguments_ExitCode2(params string[] command)
    {
        var result = await CliRunner.RunAsync(db.Schema, command);

        Assert.True(result.ExitCode == 2, result.ToString());
        Assert.Contains("error: ", result.Error, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", result.Error, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Commands_InvalidSchemaName_OneLineUsageError()
    {
        var result = await CliRunner.RunAsync("Not-A-Schema", "runs", "list");

        AssertOneLineError(result, 2, "AgentPgOptions.Schema 'Not-A-Schema' is not a valid schema name");
        Assert.DoesNotContain("(Parameter", result.Error, StringComparison.Ordinal);
    }

    [DatabaseTheory]
    [InlineData("runs", "show")]
    [InlineData("runs", "cancel")]
    [InlineData("sessions", "delete")]
    [InlineData("compactions", "restore")]
    [InlineData("approvals", "approve")]
    [InlineData("approvals", "reject", "--reason", "no")]
    public async Task Commands_UnknownId_OneLineErrorAndExitCode1(params string[] command)
    {
        var id = Guid.NewGuid();
        var result = await CliRunner.RunAsync(db.Schema, [.. command.Take(2), id.ToString(), .. command.Skip(2)]);

        AssertOneLineError(result, 1, id.ToString());
    }

    [DatabaseFact]
    public async Task RunsListShowAgentsList_CompletedRunWithToolCall_TablesAndJson()
    {
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("lookup", (_, _, _) => Task.FromResult("found [42]"))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"], Description = "looks things up" });
        h.Claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("lookup", new { }) : FakeReply.Text("the answer is " + r.ToolResults[0].Content));
        var session = await h.Client.NewSessionAsync();
        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "look it up [please]");

        var agents = Json(await CliRunner.RunAsync(db.Schema, "agents", "list", "--json"));
        Assert.Contains(agents.GetProperty("agents").EnumerateArray(), a => a.GetProperty("name").GetString() == agent.Name);
        var agentsTable = await CliRunner.RunAsync(db.Schema, "agents", "list");
        Assert.Contains(agent.Name, agentsTable.Output, StringComparison.Ordinal);
        Assert.Contains("looks things up", agentsTable.Output, StringComparison.Ordinal);

        var list = Json(await CliRunner.RunAsync(db.Schema, "runs", "list", "--agent", agent.Name, "--state", "completed", "--since", "1h", "--json"));
        var listed = Assert.Single(list.GetProperty("runs").EnumerateArray());
        Assert.Equal(response.RunId, listed.GetProperty("id").GetGuid());
        Assert.Equal("Completed", listed.GetProperty("state").GetString());
        var none = Json(await CliRunner.RunAsync(db.Schema, "runs", "list", "--agent", agent.Id.ToString(), "--state", "failed,cancelled", "--json"));
        Assert.Equal(0, none.GetProperty("runs").GetArrayLength());

        var table = await CliRunner.RunAsync(db.Schema, "runs", "list", "--session", session.ToString());
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains(response.RunId.ToString(), table.Output, StringComparison.Ordinal);
        Assert.Contains(agent.Name, table.Output, StringComparison.Ordinal);
        // Brackets in stored text are printed as they are, never read as markup.
        Assert.Contains("look it up [please]", table.Output, StringComparison.Ordinal);

        var show = await CliRunner.RunAsync(db.Schema, "runs", "show", response.RunId.ToString());
        Assert.True(show.ExitCode == 0, show.ToString());
        Assert.Contains("completed", show.Output, StringComparison.Ordinal);
        Assert.Contains("Iterations:", show.Output, StringComparison.Ordinal);
        Assert.Contains("Tool calls:", show.Output, StringComparison.Ordinal);
        Assert.Contains("lookup", show.Output, StringComparison.Ordinal);
        Assert.Contains("found [42]", show.Output, StringComparison.Ordinal);
        Assert.Contains("the answer is found [42]", show.Output, StringComparison.Ordinal);

        var shown = Json(await CliRunner.RunAsync(db.Schema, "runs", "show", response.RunId.ToString(), "--json"));
        Assert.Equal(response.RunId, shown.GetProperty("run").GetProperty("id").GetGuid());
        Assert.Equal(2, shown.GetProperty("iterations").GetArrayLength());
        var call = Assert.Single(shown.GetProperty("toolCalls").EnumerateArray());
        Assert.Equal("lookup", call.GetProperty("name").GetString());
        Assert.Equal(response.Usage.InputTokens, shown.GetProperty("run").GetProperty("usage").GetProperty("inputTokens").GetInt64());
    }

    [DatabaseFact]
    public async Task AgentsShow_ThinkingEffortAndOutputSchema_ByNameOrId_InertAndJson()
    {
        // No command showed an agent's thinking, effort or output schema (agents list has a column for none of them).
        await using var client = db.CreateClient();
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var worker = await client.CreateAgentAsync(new AgentDefinition { Name = "worker_" + suffix, Model = "claude-sonnet-4-5", Tools = [] });
        using var schema = JsonDocument.Parse("""
            {"type":"object","properties":{"verdict":{"type":"string","description":"red \u001b[31malert"}},"required":["verdict"],"additionalProperties":false}
            """);
        var judge = await client.CreateAgentAsync(new AgentDefinition
        {
            Name = "judge_" + suffix, Model = "claude-sonnet-4-5", MaxTokens = 8192, Thinking = AgentThinking.Enabled(2048).WithDisplay(AgentThinkingDisplay.Summarized),
            Effort = AgentEffort.ExtraHigh, OutputSchema = schema.RootElement.Clone(), Tools = ["lookup"], AgentIds = [worker.Id],
            ToolsRequiringApproval = ["worker_" + suffix], SystemPrompt = "Judge fairly.",
            MaxIterations = 12, TokenBudget = 50_000, Memory = AgentMemory.PerSessionMetadata("tenant_id"),
            ServerTools = [ServerTool.WebSearch(maxUses: 3), ServerTool.ToolSearch(ToolSearchKind.Bm25, ["lookup"])],
        });

        var shown = await CliRunner.RunAsync(db.Schema, "agents", "show", judge.Name);
        Assert.True(shown.ExitCode == 0, shown.ToString());
        Assert.Matches(@"Thinking\s+enabled, budget 2048 tokens, display summarized", shown.Output);
        Assert.Matches(@"Effort\s+xhigh", shown.Output);
        Assert.Matches(@"Max iterations\s+12", shown.Output);
        Assert.Matches(@"Token budget\s+50000", shown.Output);
        Assert.Matches(@"Memory\s+per value of session metadata 'tenant_id', files up to 65536 bytes", shown.Output);
        Assert.Matches(@"Server tools\s+web_search \(web_search_20250305\), tool_search_tool_bm25 \(tool_search_tool_bm25_20251119; always loaded: lookup\)", shown.Output);
        Assert.Matches($@"Agents\s+worker_{suffix} \({worker.Id}\)", shown.Output);
        Assert.Matches($@"Approval\s+worker_{suffix}", shown.Output);
        Assert.Matches(@"Output schema\s+\{", shown.Output);
        Assert.Contains("\"verdict\": {", shown.Output, StringComparison.Ordinal);
        Assert.DoesNotContain('\u001b', shown.Output);
        Assert.Equal(shown.Output, (await CliRunner.RunAsync(db.Schema, "agents", "show", judge.Id.ToString())).Output);

        var json = Json(await CliRunner.RunAsync(db.Schema, "agents", "show", judge.Id.ToString(), "--json"));
        Assert.Equal("verdict", json.GetProperty("outputSchema").GetProperty("required")[0].GetString());
        Assert.Equal(2048, json.GetProperty("thinking").GetProperty("budgetTokens").GetInt32());
        Assert.Equal("web_search_20250305", json.GetProperty("serverTools")[0].GetProperty("definition").GetProperty("type").GetString());
        AssertOneLineError(await CliRunner.RunAsync(db.Schema, "agents", "show", "nobody_" + suffix), 1, "nobody_" + suffix);
    }

    [DatabaseFact]
    public async Task ModelAndToolOutputWithTerminalEscapes_AreShownInertByEveryCommand()
    {
        // What a model (or a prompt injection through a tool's output) could send a terminal: set the window title, write the
        // clipboard (OSC 52), clear the screen, colour through the 8-bit CSI, overwrite the line with a carriage return.
        const string hostile = "\u001b]0;pwned\u0007\u001b]52;c;ZXZpbA==\u0007\u001b[2J\u009b31mred\rfake";
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("lookup", (_, _, _) => Task.FromResult("found " + hostile))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["lookup"], Description = "looks " + hostile });
        h.Claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("lookup", new { q = hostile }) : FakeReply.Text("the answer " + hostile));
        var session = await h.Client.NewSessionAsync();
        var response = await h.Client.RunFastSyncAsync(session, agent.Id, "prompt " + hostile);

        foreach (var command in new[] { ["runs", "list"], ["runs", "show", response.RunId.ToString()], ["runs", "watch", response.RunId.ToString()], new[] { "agents", "list" } })
        {
            var result = await CliRunner.RunAsync(db.Schema, command);
            Assert.True(result.ExitCode == 0, result.ToString());
            var control = result.Output.IndexOfAny([.. Enumerable.Range(0, 0xA0).Select(c => (char)c).Where(c => c is (< ' ' and not '\n' and not '\t') or >= '\u007f')]);
            Assert.True(control < 0, $"agentpg {string.Join(' ', command)} wrote the control character U+{(control < 0 ? 0 : result.Output[control]):X4} to the terminal:\n{result.Output}");
        }

        // Shown, not dropped: the reader sees that the text held escape sequences.
        var watch = await CliRunner.RunAsync(db.Schema, "runs", "watch", response.RunId.ToString());
        Assert.Contains("the answer ␛]0;pwned␇␛]52;c;ZXZpbA==␇␛[2J\uFFFD31mredfake", watch.Output, StringComparison.Ordinal);
        Assert.Contains("[tool] lookup → found ␛]0;pwned␇", watch.Output, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task Status_StartedWorkerAndQueuedRun_ShowsInstanceQueueAndJson()
    {
        await using var h = await Harness.StartAsync(db);
        var producer = await h.AddClientAsync(start: false);
        var agent = await h.AgentAsync();
        var held = new TaskCompletionSource();
        h.Claude.Respond(async (_, cancellationToken) =>
        {
            await held.Task.WaitAsync(cancellationToken);
            return FakeReply.Text("done");
        });
        var session = await producer.NewSessionAsync();
        var runId = await producer.RunFastAsync(session, agent.Id, "wait");
        await Eventually.TrueAsync(async () => (await producer.GetRunAsync(runId)).State == RunState.Streaming, "the run streams", s_timeout);

        var table = await CliRunner.RunAsync(db.Schema, "status");
        Assert.True(table.ExitCode == 0, table.ToString());
        Assert.Contains(h.Client.InstanceId, table.Output, StringComparison.Ordinal);
        Assert.Contains("streaming", table.Output, StringComparison.Ordinal);
        Assert.Contains("Pending approvals: none.", table.Output, StringComparison.Ordinal);

        var json = Json(await CliRunner.RunAsync(db.Schema, "status", "--json"));
        Assert.Contains(json.GetProperty("instances").EnumerateArray(), i => i.GetProperty("instance").GetProperty("id").GetString() == h.Client.InstanceId);
        Assert.Contains(json.GetProperty("queue").EnumerateArray(), q => q.GetProperty("state").GetString() == "Streaming" && q.GetProperty("count").GetInt32() >= 1);
        held.SetResult();
        await h.Client.WaitForRunAsync(runId).WaitAsync(s_timeout);
    }

    [DatabaseFact]
    public async Task Status_JudgesHeartbeats_ByTheWorkersHeartbeatIntervalAndInstanceTtl()
    {
        // Before, a fixed 30 s: a worker with a HeartbeatInterval of a minute showed as stale between its beats (and one with
        // a 1 s interval as ok long after it stopped), and no option could say otherwise.
        await using var h = await Harness.StartAsync(db, o =>
        {
            o.HeartbeatInterval = TimeSpan.FromMinutes(1);
            o.InstanceTtl = TimeSpan.FromMinutes(5);
        });
        Assert.Equal(1, await db.ExecuteAsync(
            "UPDATE {schema}.agentpg_instances SET last_heartbeat_at = now() - interval '45 seconds' WHERE id = $1", h.Client.InstanceId));

        async Task<string> HealthAsync(params string[] options)
        {
            var json = Json(await CliRunner.RunAsync(db.Schema, ["status", "--json", .. options]));
            var instance = json.GetProperty("instances").EnumerateArray().Single(i => i.GetProperty("instance").GetProperty("id").GetString() == h.Client.InstanceId);
            Assert.Equal(instance.GetProperty("health").GetString() == "ok", instance.GetProperty("healthy").GetBoolean());
            return instance.GetProperty("health").GetString()!;
        }

        Assert.Equal("late", await HealthAsync());
        Assert.Equal("ok", await HealthAsync("--heartbeat-interval", "1m", "--instance-ttl", "5m"));
        Assert.Equal("stale", await HealthAsync("--instance-ttl", "40s"));
        var table = await CliRunner.RunAsync(db.Schema, "status", "--heartbeat-interval", "1m");
        Assert.True(table.ExitCode == 0, table.ToString());
        // The table wraps its cells at the console's width ("ok" and "(45.3 s ago)" may land on two lines).
        Assert.DoesNotContain("late", table.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("stale", table.Output, StringComparison.Ordinal);
        Assert.Contains("late", (await CliRunner.RunAsync(db.Schema, "status")).Output, StringComparison.Ordinal);
        var bad = await CliRunner.RunAsync(db.Schema, "status", "--instance-ttl", "0s");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("--instance-ttl: '0s' is not a positive duration", bad.Error, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task RunsCancel_QueuedRun_Cancelled()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "never claimed: no worker runs");

        var result = await CliRunner.RunAsync(db.Schema, "runs", "cancel", runId.ToString(), "--json");

        Assert.Equal("Cancelled", Json(result).GetProperty("state").GetString());
        Assert.Equal(RunState.Cancelled, (await h.Client.GetRunAsync(runId)).State);
        // Cancelling a cancelled run is not an error (CancelRunAsync is idempotent).
        var again = await CliRunner.RunAsync(db.Schema, "runs", "cancel", runId.ToString());
        Assert.True(again.ExitCode == 0, again.ToString());
        Assert.Contains("is cancelled", again.Output, StringComparison.Ordinal);
    }

    [DatabaseFact]
    public async Task SessionsDelete_RefusedWhileARunIsQueued_ThenDeletesTheSession()
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "never claimed: no worker runs");

        var busy = await CliRunner.RunAsync(db.Schema, "sessions", "delete", session.ToString());
        AssertOneLineError(busy, 1, $"has 1 run that is not finished ({runId})");
        Assert.Equal(session, (await h.Client.GetSessionAsync(session)).Id);

        await h.Client.CancelRunAsync(runId);
        var deleted = await CliRunner.RunAsync(db.Schema, "sessions", "delete", session.ToString(), "--json");

        Assert.True(deleted.ExitCode == 0, deleted.ToString());
        Assert.True(Json(deleted).GetProperty("deleted").GetBoolean());
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_sessions WHERE id = $1", session));
        AssertOneLineError(await CliRunner.RunAsync(db.Schema, "sessions", "delete", session.ToString()), 1, $"Session {session} does not exist");
    }

    [DatabaseFact]
    public async Task Compactions_ListAndRestore_TheConversationComesBack()
    {
        // RegenerateRunAsync refuses a run a compaction summarised in part and names the compaction to restore: an operator
        // can do that from the command line.
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("fetch", (_, _, _) => Task.FromResult(new string('x', 2_000)))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["fetch"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0 ? FakeReply.ToolUse("fetch", new { }) : FakeReply.Text("fetched"));
        var session = await h.Client.NewSessionAsync();
        for (var i = 0; i < 4; i++)
        {
            await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, $"question {i}"), $"turn {i}");
        }

        var before = JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session));
        var compaction = await h.Client.CompactAsync(session, new CompactionOptions
        {
            Strategy = CompactionStrategy.Hybrid, ProtectedTokens = 50, PreserveLastN = 2, TargetTokens = 100_000, MaxTokensForModel = 200_000,
        });
        Assert.True(compaction.MessagesPruned > 0);

        var list = Json(await CliRunner.RunAsync(db.Schema, "compactions", "list", "--session", session.ToString(), "--json"));
        var listed = Assert.Single(list.GetProperty("compactions").EnumerateArray());
        Assert.Equal(compaction.EventId, listed.GetProperty("id").GetGuid());
        Assert.Equal(JsonValueKind.Null, listed.GetProperty("restoredAt").ValueKind);
        var table = await CliRunner.RunAsync(db.Schema, "compactions", "list", "--session", session.ToString());
        Assert.Contains(compaction.EventId.ToString(), table.Output, StringComparison.Ordinal);
        Assert.Contains("1 compaction(s). Undo the newest of a session with 'agentpg compactions restore ID'.", table.Output, StringComparison.Ordinal);

        var restored = await CliRunner.RunAsync(db.Schema, "compactions", "restore", compaction.EventId.ToString());

        Assert.True(restored.ExitCode == 0, restored.ToString());
        Assert.Contains($"Compaction {compaction.EventId} restored.", restored.Output, StringComparison.Ordinal);
        Assert.Equal(before, JsonSerializer.Serialize(await h.Client.GetMessagesAsync(session)));
        var again = await CliRunner.RunAsync(db.Schema, "compactions", "restore", compaction.EventId.ToString(), "--json");
        AssertOneLineError(again, 1, "restored");
        var listedAfter = Json(await CliRunner.RunAsync(db.Schema, "compactions", "list", "--session", session.ToString(), "--json"));
        Assert.NotEqual(JsonValueKind.Null, Assert.Single(listedAfter.GetProperty("compactions").EnumerateArray()).GetProperty("restoredAt").ValueKind);
        Assert.Equal("No compactions.", (await CliRunner.RunAsync(db.Schema, "compactions", "list", "--session", Guid.NewGuid().ToString())).Output.Trim());
    }

    [DatabaseFact]
    public async Task Approvals_ListApproveAndReject_TheRunContinues()
    {
        var executed = 0;
        await using var h = await Harness.StartAsync(db, tools: [new TestTool("refund", (_, _, _) => Task.FromResult("refunded " + Interlocked.Increment(ref executed)))]);
        var agent = await h.AgentAsync(a => a with { Tools = ["refund"], ToolsRequiringApproval = ["refund"] });
        h.Claude.Respond(r => r.ToolResults.Count == 0
            ? FakeReply.ToolUse("refund", new { })
            : FakeReply.Text(string.Join(" | ", r.ToolResults.Select(t => (t.IsError ? "ERROR " : "") + t.Content))));

        async Task<(Guid Run, Guid Execution)> WaitingAsync()
        {
            var session = await h.Client.NewSessionAsync();
            var runId = await h.Client.RunFastAsync(session, agent.Id, "refund it");
            Guid? execution = null;
            await Eventually.TrueAsync(async () =>
            {
                var list = Json(await CliRunner.RunAsync(db.Schema, "approvals", "list", "--session", session.ToString(), "--json"));
                execution = list.EnumerateArray().Select(a => (Guid?)a.GetProperty("toolExecutionId").GetGuid()).FirstOrDefault();
                return execution is not null;
            }, "agentpg approvals list shows the refund", s_timeout);
            return (runId, execution!.Value);
        }

        var (approvedRun, approvedCall) = await WaitingAsync();
        var table = await CliRunner.RunAsync(db.Schema, "approvals", "list");
        Assert.Contains(approvedCall.ToString(), table.Output, StringComparison.Ordinal);
        Assert.Contains("refund", table.Output, StringComparison.Ordinal);
        var approve = await CliRunner.RunAsync(db.Schema, "approvals", "approve", approvedCall.ToString(), "--comment", "fine", "--by", "ops");
        Assert.True(approve.ExitCode == 0, approve.ToString());
        Assert.Equal("refunded 1", (await h.Client.WaitForRunAsync(approvedRun).WaitAsync(s_timeout)).Text);
        var approval = Assert.Single(await h.Client.GetRunToolCallsAsync(approvedRun)).Approval;
        Assert.True(approval is { Approved: true, DecidedBy: "ops", Comment: "fine" }, approval?.ToString());

        var (rejectedRun, rejectedCall) = await WaitingAsync();
        var reject = await CliRunner.RunAsync(db.Schema, "approvals", "reject", rejectedCall.ToString(), "--reason", "not today", "--json");
        Assert.False(Json(reject).GetProperty("approved").GetBoolean());
        Assert.Contains("not today", (await h.Client.WaitForRunAsync(rejectedRun).WaitAsync(s_timeout)).Text, StringComparison.Ordinal);
        Assert.Equal(1, executed);

        var decidedAgain = await CliRunner.RunAsync(db.Schema, "approvals", "approve", rejectedCall.ToString());
        AssertOneLineError(decidedAgain, 1, rejectedCall.ToString());
    }
}
