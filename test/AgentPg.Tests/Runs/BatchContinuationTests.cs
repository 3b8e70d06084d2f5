using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Runs;

/// <summary>Continuations in batch mode (StopReasonTests has them streamed): each continuation is a batch of its own, and
/// every answer Claude charged is counted.</summary>
public sealed class BatchContinuationTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    private static readonly TimeSpan s_timeout = TimeSpan.FromSeconds(60);

    private static bool IsBatchCreate(RecordedRequest r) => r.Method == "POST" && r.Path == "/v1/messages/batches";

    /// <summary>The request of each batch created, in order.</summary>
    private static List<System.Text.Json.JsonElement> Sent(Harness h) => h.Claude.Requests.Where(IsBatchCreate)
        .Select(r => r.Body!.Value.GetProperty("requests")[0].GetProperty("params")).ToList();

    private static FakeUsage Tokens(int input, int output) => new() { InputTokens = input, OutputTokens = output, CacheCreationInputTokens = 0, CacheReadInputTokens = 0 };

    [DatabaseFact]
    public async Task MaxTokensWithTruncatedToolUse_TheNextBatchHasDoubledMaxTokensAndThePartialCallNeverRuns()
    {
        var notes = new NoteTool();
        await using var h = await Harness.StartAsync(db, tools: notes);
        var agent = await h.AgentAsync(a => a with { MaxTokens = 1000, Tools = ["save_note"] });
        h.Claude.Enqueue(
            FakeReply.Message(FakeContentBlock.Text("Saving."), FakeContentBlock.TruncatedToolUse("save_note", "{\"text\": \"a very long no")) with
            {
                StopReason = "max_tokens", Usage = Tokens(100, 1000),
            },
            FakeReply.Message(FakeContentBlock.ToolUse("save_note", new { text = "a very long note" })) with { StopReason = "tool_use", Usage = Tokens(100, 50) },
            FakeReply.Text("Saved your note.") with { Usage = Tokens(200, 5) });

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "save a long note"), "the run", s_timeout);

        Assert.Equal("Saved your note.", response.Text);
        Assert.Equal(["a very long note"], notes.Saved);
        var sent = Sent(h);
        Assert.Equal([1000L, 2000L, 1000L], sent.Select(p => p.GetProperty("max_tokens").GetInt64()));
        Assert.Equal(1, sent[1].GetProperty("messages").GetArrayLength());
        var iterations = await h.Client.GetIterationsAsync(response.RunId);
        Assert.Equal(["user_prompt", "continuation", "tool_results"], iterations.Select(i => i.TriggerType));
        Assert.Equal("truncated_tool_use", iterations[0].ErrorType);
        Assert.Equal(3, iterations.Select(i => i.BatchId).Distinct().Count());
        Assert.Equal(new Usage { InputTokens = 400, OutputTokens = 1055 }, response.Usage);
        Assert.Equal(1055L, iterations.Sum(i => i.Usage.OutputTokens));
    }

    [DatabaseFact]
    public async Task PauseTurn_TheNextBatchSendsThePausedTurnBackAsIs()
    {
        await using var h = await Harness.StartAsync(db);
        var agent = await h.AgentAsync();
        h.Claude.Enqueue(
            FakeReply.Text("Searching the web...") with { StopReason = "pause_turn", Usage = Tokens(10, 20) },
            FakeReply.Text("Found it: 42.") with { Usage = Tokens(30, 4) });

        var response = await Eventually.WithinAsync(h.Client.RunSyncAsync(await h.Client.NewSessionAsync(), agent.Id, "look it up"), "the run", s_timeout);

        Assert.Equal("Found it: 42.", response.Text);
        var second = Sent(h)[1].GetProperty("messages");
        Assert.Equal(2, second.GetArrayLength());
        Assert.Equal("assistant", second[1].GetProperty("role").GetString());
        Assert.Equal("Searching the web...", second[1].GetProperty("content")[0].GetProperty("text").GetString());
        Assert.Equal(["user_prompt", "continuation"], (await h.Client.GetIterationsAsync(response.RunId)).Select(i => i.TriggerType));
        Assert.Equal(2, response.IterationCount);
        Assert.Equal(new Usage { InputTokens = 40, OutputTokens = 24 }, response.Usage);
    }
}
