using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>U+0000, which PostgreSQL cannot store, and unpaired UTF-16 surrogates, which UTF-8 cannot encode: rejected with a
/// clear error where the caller can fix them (prompts, agent definitions, metadata, run options, filters), U+0000 stored as
/// U+FFFD where AgentPg must keep it (Claude's text and tool inputs, streamed or batched; tool outputs are covered in
/// ToolResultRecordingTests), and so is an unpaired surrogate the model escapes in a tool input's JSON.</summary>
public sealed class NulCharacterTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(30);

    [DatabaseTheory]
    [InlineData("fast")]
    [InlineData("batch")]
    [InlineData("transaction")]
    public async Task Prompt_WithNul_IsRejectedWithThePositionAndNothingIsStored(string how)
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();

        var ex = await Assert.ThrowsAsync<ArgumentException>(async () =>
        {
            switch (how)
            {
                case "fast":
                    await h.Client.RunFastAsync(session, agent.Id, "ab\0c");
                    break;
                case "batch":
                    await h.Client.RunAsync(session, agent.Id, "ab\0c");
                    break;
                default:
                    await using (var connection = await db.DataSource.OpenConnectionAsync())
                    await using (var transaction = await connection.BeginTransactionAsync())
                    {
                        await h.Client.RunFastAsync(transaction, session, agent.Id, "ab\0c");
                    }

                    break;
            }
        });

        Assert.Equal("prompt", ex.ParamName);
        Assert.Contains("U+0000", ex.Message, StringComparison.Ordinal);
        Assert.Contains("at index 2", ex.Message, StringComparison.Ordinal);
        Assert.Equal(0L, await db.ScalarAsync<long>("SELECT count(*) FROM {schema}.agentpg_runs WHERE session_id = $1", session));
    }

    // Each entry point that stores or filters by the caller's text, with the field the message names. Before: a raw
    // PostgresException (22021 for text, 22P05 for jsonb) or Npgsql's EncoderFallbackException ("Unable to translate Unicode
    // character \\uD800 at index 1 to specified code page"), which say neither which field nor what to do.
    public static TheoryData<string, bool> CallerTexts()
    {
        var data = new TheoryData<string, bool>();
        foreach (var field in new[]
                 {
                     "AgentDefinition.Name", "AgentDefinition.Model", "AgentDefinition.Description", "AgentDefinition.SystemPrompt",
                     "RunOptions.OverrideInstructions", "RunOptions.AppendInstructions", "RunOptions.IdempotencyKey", "prompt", "GetAgentByName",
                     "ToolExecutionQuery.ToolName", "reason", "AgentDefinition.Metadata", "AgentDefinition.Config", "session metadata",
                     "RunOptions.Variables", "RunQuery.SessionMetadata",
                 })
        {
            data.Add(field, false);
            data.Add(field, true);
        }

        return data;
    }

    [DatabaseTheory]
    [MemberData(nameof(CallerTexts))]
    public async Task CallerText_WithNulOrAnUnpairedSurrogate_IsRejectedNamingTheFieldAndNothingIsStored(string field, bool surrogate)
    {
        await using var h = await Harness.StartAsync(db, start: false);
        var agent = await h.AgentAsync();
        var session = await h.Client.NewSessionAsync();
        var bad = surrogate ? "ab\uD800c" : "ab\0c";
        var values = new Dictionary<string, object?> { ["note"] = bad };
        var c = h.Client;
        const string Counts = "SELECT (SELECT count(*) FROM {schema}.agentpg_agents) * 1000000 + (SELECT count(*) FROM {schema}.agentpg_sessions) * 1000 + (SELECT count(*) FROM {schema}.agentpg_runs)";
        var before = await db.ScalarAsync<long>(Counts);

        var (paramName, named) = field switch
        {
            "AgentDefinition.Name" => ("definition", (Func<Task>)(() => c.CreateAgentAsync(new AgentDefinition { Name = bad, Model = "claude-sonnet-4-5" }))),
            "AgentDefinition.Model" => ("definition", () => c.CreateAgentAsync(new AgentDefinition { Name = "n" + Guid.NewGuid().ToString("N"), Model = bad })),
            "AgentDefinition.Description" => ("definition", () => c.GetOrCreateAgentAsync(agent with { Name = "n" + Guid.NewGuid().ToString("N"), Description = bad })),
            "AgentDefinition.SystemPrompt" => ("definition", () => c.UpdateAgentAsync(agent with { SystemPrompt = bad })),
            "AgentDefinition.Metadata" => ("AgentDefinition.Metadata", () => c.CreateAgentAsync(agent with { Name = "n" + Guid.NewGuid().ToString("N"), Metadata = values })),
            "AgentDefinition.Config" => ("AgentDefinition.Config", () => c.UpdateAgentAsync(agent with { Config = values })),
            "session metadata" => ("metadata", () => c.NewSessionAsync(metadata: values)),
            "RunOptions.OverrideInstructions" => ("options", () => c.RunFastAsync(session, agent.Id, "hi", new RunOptions { OverrideInstructions = bad })),
            "RunOptions.AppendInstructions" => ("options", () => c.RunAsync(session, agent.Id, "hi", new RunOptions { AppendInstructions = bad })),
            "RunOptions.IdempotencyKey" => ("options", () => c.RunFastAsync(session, agent.Id, "hi", new RunOptions { IdempotencyKey = bad })),
            "RunOptions.Variables" => ("RunOptions.Variables", () => c.RunFastAsync(session, agent.Id, "hi", new RunOptions { Variables = values })),
            "prompt" => ("prompt", () => c.RunFastAsync(session, agent.Id, bad)),
            "GetAgentByName" => ("name", () => c.GetAgentByNameAsync(bad)),
            "ToolExecutionQuery.ToolName" => ("query", () => c.ListToolExecutionsAsync(new ToolExecutionQuery { ToolName = bad })),
            "RunQuery.SessionMetadata" => ("SessionMetadata", () => c.ListRunsAsync(new RunQuery { SessionMetadata = values })),
            "reason" => ("reason", () => c.RejectToolCallAsync(Guid.NewGuid(), bad)),
            _ => throw new ArgumentOutOfRangeException(nameof(field), field, null),
        };

        var ex = await Assert.ThrowsAsync<ArgumentException>(named);

        Assert.Equal(paramName, ex.ParamName);
        Assert.Contains(surrogate ? "unpaired UTF-16 surrogate (\\uD800) at index 2" : "the character U+0000 (NUL) at index 2", ex.Message, StringComparison.Ordinal);
        Assert.Contains(surrogate ? "cannot be stored as UTF-8" : "which PostgreSQL cannot store", ex.Message, StringComparison.Ordinal);
        if (field.Contains('.', StringComparison.Ordinal))
        {
            Assert.Contains(field.Split('.')[^1], ex.Message, StringComparison.Ordinal);
        }

        Assert.Equal(before, await db.ScalarAsync<long>(Counts));
        var stored = await c.GetAgentByIdAsync(agent.Id);
        Assert.Equal((agent.UpdatedAt, agent.SystemPrompt), (stored.UpdatedAt, stored.SystemPrompt));
        Assert.Empty(stored.Config);
    }

    /// <summary>A tool that returns its <c>text</c> input and hands it to <paramref name="received"/>.</summary>
    private static TestTool Echo(TaskCompletionSource<string> received) => new("echo", (_, input, _) =>
    {
        var text = input.GetProperty("text").GetString()!;
        received.TrySetResult(text);
        return Task.FromResult(text);
    });

    [DatabaseFact]
    public async Task StreamedText_WithNul_IsStoredWithTheReplacementCharacter()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("a\0b"));
        var session = await h.Client.NewSessionAsync();

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(session, agent.Id, "go"), "the run to end", s_timeout);

        Assert.Equal("a\uFFFDb", response.Text);
        var messages = await h.Client.GetMessagesAsync(session);
        Assert.Equal("a\uFFFDb", messages[^1].Content[0].Text);
    }

    [DatabaseFact]
    public async Task BatchResult_WithNul_IsStoredWithTheReplacementCharacter()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(FakeReply.Text("a\0b"));

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to end", s_timeout);

        Assert.Equal("a\uFFFDb", response.Text);
    }

    [DatabaseFact]
    public async Task ToolInput_WithNul_ReachesTheToolWithTheReplacementCharacter()
    {
        var received = new TaskCompletionSource<string>();
        await using var h = await Harness.StartAsync(db, tools: Echo(received));
        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(r => r.ToolResults.Count > 0 ? FakeReply.Text("echoed " + r.ToolResults[0].Content) : FakeReply.ToolUse("echo", new { text = "x\0y" }));

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to end", s_timeout);

        Assert.Equal("x\uFFFDy", await received.Task);
        Assert.Equal("echoed x\uFFFDy", response.Text);
        Assert.Equal("x\uFFFDy", Assert.Single(response.ToolCalls).Input.GetProperty("text").GetString());
    }

    [DatabaseFact]
    public async Task ToolInput_WithAnEscapedUnpairedSurrogate_ReachesTheToolWithTheReplacementCharacter()
    {
        // The model writes a tool's input as JSON text; "\ud800" in it is an unpaired surrogate. Before, reading the input made
        // the whole run fail ("Cannot read incomplete UTF-16 JSON text as string with missing low surrogate").
        var received = new TaskCompletionSource<string>();
        await using var h = await Harness.StartAsync(db, tools: Echo(received));
        var agent = await h.AgentAsync(a => a with { Tools = null });
        h.Claude.Respond(r => r.ToolResults.Count > 0
            ? FakeReply.Text("echoed " + r.ToolResults[0].Content)
            : FakeReply.Message(new FakeToolUseBlock("echo", default) { PartialInputJson = """{"text": "x\ud800y"}""" }) with
            {
                StopReason = FakeStopReason.ToolUse,
            });

        var response = await Eventually.WithinAsync(h.Client.RunFastSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "go"), "the run to end", s_timeout);

        Assert.Equal("x\uFFFDy", await received.Task);
        Assert.Equal("echoed x\uFFFDy", response.Text);
        Assert.Equal("x\uFFFDy", Assert.Single(response.ToolCalls).Input.GetProperty("text").GetString());
    }
}
