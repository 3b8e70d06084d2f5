using System.Text.Json;
using AgentPg.Testing;
using AgentPg.Tests.Infrastructure;

namespace AgentPg.Tests.Events;

/// <summary>WatchRunAsync delivers the input of a tool call as Claude writes it (<see cref="ToolInputDeltaEvent"/>): before the call
/// starts, in pieces that concatenate to the call's input, with the call's id and name — also to a watch that starts in the
/// middle of the call.</summary>
public sealed class WatchRunToolInputTests(SchemaFixture db) : IClassFixture<SchemaFixture>
{
    // Long enough to stream in many pieces (the fake sends 16 characters per input_json_delta).
    private static readonly string s_note = string.Join(" ", Enumerable.Range(1, 40).Select(i => $"line {i} of the note;"));

    private static readonly ToolSchema s_noteSchema = new()
    {
        Properties = new Dictionary<string, PropertyDef> { ["title"] = new() { Type = "string" }, ["text"] = new() { Type = "string" } },
        Required = ["title", "text"],
    };

    private static TestTool WriteNote() => new("write_note", (_, input, _) => Task.FromResult($"saved {input.GetProperty("text").GetString()!.Length} characters"), s_noteSchema);

    /// <summary>The first answer writes the note (a sentence, then the tool call, held after <paramref name="pauseAfter"/> events
    /// until <paramref name="rest"/>), the second says it is done.</summary>
    private static async Task<AgentDefinition> ScriptAsync(Harness h, int pauseAfter, Task rest, Task? start = null)
    {
        var agent = await h.Client.CreateAgentAsync(new AgentDefinition
        {
            Name = "notes_" + Guid.NewGuid().ToString("N")[..6], Model = "claude-sonnet-4-5", Tools = ["write_note"],
        });
        h.Claude.Respond(async (request, cancellationToken) =>
        {
            if (request.ToolResults.Count > 0)
            {
                return FakeReply.Text("The note is saved.");
            }

            if (start is not null)
            {
                await start.WaitAsync(cancellationToken);
            }

            return FakeReply.Message(FakeContentBlock.Text("I will write it down."), FakeContentBlock.ToolUse("write_note", new { title = "Plan", text = s_note }))
                with { StopReason = "tool_use", StreamPause = new FakeStreamPause(pauseAfter, rest) };
        });
        return agent;
    }

    private static async Task<List<RunEvent>> CollectAsync(IAsyncEnumerable<RunEvent> events, Func<RunEvent, Task> onEvent)
    {
        var list = new List<RunEvent>();
        await foreach (var e in events)
        {
            list.Add(e);
            await onEvent(e);
        }

        return list;
    }

    [DatabaseFact]
    public async Task ToolInput_StreamsToAWatcherWhileClaudeWritesIt_AndConcatenatesToTheCallsInput()
    {
        await using var h = await Harness.StartAsync(db, tools: WriteNote());
        var workerKnowsTheWatch = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstInputSeen = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        // message_start, two blocks' starts and stops, the text, ping: the pause falls inside the tool call's input.
        var agent = await ScriptAsync(h, pauseAfter: 12, firstInputSeen.Task, workerKnowsTheWatch.Task);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "Write the plan down.");

        RunState? stateAtFirstInput = null;
        var events = await Eventually.WithinAsync(CollectAsync(h.Client.WatchRunAsync(runId), async e =>
        {
            if (!workerKnowsTheWatch.Task.IsCompleted)
            {
                await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the worker learns of the watch");
                workerKnowsTheWatch.SetResult();
            }

            if (e is ToolInputDeltaEvent && stateAtFirstInput is null)
            {
                stateAtFirstInput = (await h.Client.GetRunAsync(runId)).State;
                firstInputSeen.SetResult();
            }
        }), "the watched run to finish");

        // The first piece came while Claude was still writing the call (the stream was held until it arrived).
        Assert.Equal(RunState.Streaming, stateAtFirstInput);
        var pieces = events.OfType<ToolInputDeltaEvent>().ToList();
        Assert.True(pieces.Count >= 2, $"the input arrived in {pieces.Count} piece(s), expected at least one before the pause and one after");
        var stored = events.OfType<MessageStoredEvent>().Select(m => m.Message!).First(m => m.Role == MessageRole.Assistant);
        var call = stored.Content.Single(b => b.Type == ContentTypes.ToolUse);
        Assert.All(pieces, p =>
        {
            Assert.Equal(runId, p.RunId);
            Assert.Equal(1, p.IterationNumber);
            Assert.Equal(1, p.BlockIndex);
            Assert.Equal("write_note", p.ToolName);
            Assert.Equal(call.ToolUseId, p.ToolUseId);
        });
        using var input = JsonDocument.Parse(string.Concat(pieces.Select(p => p.PartialJson)));
        Assert.Equal("Plan", input.RootElement.GetProperty("title").GetString());
        Assert.Equal(s_note, input.RootElement.GetProperty("text").GetString());

        // Every piece precedes the stored answer and the call's start.
        var started = events.OfType<ToolCallStartedEvent>().Single();
        Assert.True(pieces[^1].Sequence < events.OfType<MessageStoredEvent>().First(m => m.Message!.Role == MessageRole.Assistant).Sequence);
        Assert.True(pieces[^1].Sequence < started.Sequence);
        Assert.Equal("I will write it down.", string.Concat(events.OfType<TextDeltaEvent>().Where(d => d.IterationNumber == 1).Select(d => d.Text)));
    }

    [DatabaseFact]
    public async Task AWatchStartedInTheMiddleOfACall_GetsTheInputFromItsStart()
    {
        await using var h = await Harness.StartAsync(db, tools: WriteNote());
        var rest = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var agent = await ScriptAsync(h, pauseAfter: 12, rest.Task);
        var session = await h.Client.NewSessionAsync();
        var runId = await h.Client.RunFastAsync(session, agent.Id, "Write the plan down.");
        await h.Claude.WaitForRequestAsync(r => r.Path == "/v1/messages");

        // The answer is held in the middle of the call; the watch starts there, and the rest follows once the worker knows of it.
        var watching = CollectAsync(h.Client.WatchRunAsync(runId), _ => Task.CompletedTask);
        await Eventually.TrueAsync(() => h.Client.Engine.Deltas.IsWatched(runId), "the worker learns of the watch");
        rest.SetResult();
        var events = await Eventually.WithinAsync(watching, "the watched run to finish");

        var pieces = events.OfType<ToolInputDeltaEvent>().ToList();
        Assert.StartsWith("{", pieces[0].PartialJson, StringComparison.Ordinal);
        using var input = JsonDocument.Parse(string.Concat(pieces.Select(p => p.PartialJson)));
        Assert.Equal(s_note, input.RootElement.GetProperty("text").GetString());
        Assert.Equal("saved " + s_note.Length + " characters", events.OfType<ToolCallCompletedEvent>().Single().Output);
    }
}
