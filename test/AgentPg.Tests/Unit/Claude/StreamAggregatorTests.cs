using System.Text.Json;
using AgentPg.Claude;

namespace AgentPg.Tests.Unit.Claude;

public sealed class StreamAggregatorTests
{
    private static StreamAggregator Aggregate(params string[] events)
    {
        var aggregator = new StreamAggregator();
        foreach (var e in events)
        {
            using var doc = JsonDocument.Parse(e);
            aggregator.Add(doc.RootElement.Clone());
        }

        return aggregator;
    }

    private const string Start = """{"type":"message_start","message":{"id":"msg_1","model":"claude-sonnet-4-5","usage":{"input_tokens":10,"output_tokens":1,"cache_read_input_tokens":3}}}""";
    private const string Stop = """{"type":"message_stop"}""";

    [Fact]
    public void TextDeltas_AreJoinedAndReportedAsTheyArrive()
    {
        var seen = new List<string>();
        var aggregator = new StreamAggregator { OnText = seen.Add };
        foreach (var e in new[]
                 {
                     Start,
                     """{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}""",
                     """{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello, "}}""",
                     """{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"world"}}""",
                     """{"type":"content_block_stop","index":0}""",
                     """{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"output_tokens":7}}""",
                     Stop,
                 })
        {
            aggregator.Add(JsonDocument.Parse(e).RootElement);
        }

        var r = aggregator.Response;
        Assert.Equal("Hello, world", r.Text);
        Assert.Equal(["Hello, ", "world"], seen);
        Assert.Equal("msg_1", r.MessageId);
        Assert.Equal("claude-sonnet-4-5", r.Model);
        Assert.Equal("end_turn", r.StopReason);
        Assert.Null(r.StopSequence);
        Assert.True(r.Completed);
        Assert.Equal(10, r.Usage.InputTokens);
        Assert.Equal(7, r.Usage.OutputTokens);
        Assert.Equal(3, r.Usage.CacheReadInputTokens);
    }

    [Fact]
    public void ToolInput_FromJsonDeltas_IsParsed()
    {
        var r = Aggregate(Start,
            """{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"lookup","input":{}}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Par"}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"input_json_delta","partial_json":"is\"}"}}""",
            """{"type":"content_block_stop","index":0}""",
            """{"type":"message_delta","delta":{"stop_reason":"tool_use"}}""",
            Stop).Response;

        var block = Assert.Single(r.Blocks);
        Assert.Equal("Paris", (string?)block["input"]!["city"]);
        Assert.Empty(r.TruncatedToolUses);
        Assert.Equal([0], r.CompleteToolUses().Select(t => t.Index));
    }

    [Fact]
    public void ToolWithoutInputDeltas_KeepsTheInputOfItsStart()
    {
        var r = Aggregate(Start,
            """{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_1","name":"now","input":{}}}""",
            """{"type":"content_block_stop","index":0}""",
            Stop).Response;

        Assert.Equal("{}", r.Blocks[0]["input"]!.ToJsonString());
    }

    [Fact]
    public void ToolInputCutOffAtMaxTokens_IsMarkedTruncatedAndNotComplete()
    {
        var r = Aggregate(Start,
            """{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"Let me look."}}""",
            """{"type":"content_block_stop","index":0}""",
            """{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"lookup","input":{}}}""",
            """{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"city\": \"Pa"}}""",
            """{"type":"message_delta","delta":{"stop_reason":"max_tokens"}}""",
            Stop).Response;

        Assert.Equal([1], r.TruncatedToolUses);
        Assert.Empty(r.CompleteToolUses());
        Assert.Equal("max_tokens", r.StopReason);
    }

    [Fact]
    public void ThinkingSignatureAndCitations_AreAccumulated()
    {
        var r = Aggregate(Start,
            """{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"step 1, "}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"step 2"}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}""",
            """{"type":"content_block_stop","index":0}""",
            """{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}""",
            """{"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"a"}}}""",
            """{"type":"content_block_delta","index":1,"delta":{"type":"citations_delta","citation":{"type":"char_location","cited_text":"b"}}}""",
            """{"type":"content_block_stop","index":1}""",
            Stop).Response;

        Assert.Equal("step 1, step 2", (string?)r.Blocks[0]["thinking"]);
        Assert.Equal("sig", (string?)r.Blocks[0]["signature"]);
        Assert.Equal(2, r.Blocks[1]["citations"]!.AsArray().Count);
    }

    [Fact]
    public void EveryDeltaKind_IsProgress_PingsAreNot()
    {
        // D4: RescueTimeout must see thinking, signatures, tool input and citations as a live stream, not only text.
        var progress = 0;
        var aggregator = new StreamAggregator { OnProgress = () => progress++ };
        foreach (var e in new[]
                 {
                     """{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}""",
                     """{"type":"ping"}""",
                     """{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hm"}}""",
                     """{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}""",
                     """{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"t","input":{}}}""",
                     """{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{}"}}""",
                     """{"type":"content_block_delta","index":2,"delta":{"type":"citations_delta","citation":{"type":"char_location"}}}""",
                 })
        {
            aggregator.Add(JsonDocument.Parse(e).RootElement);
        }

        Assert.Equal(6, progress);
    }

    [Fact]
    public void UnknownEventsAndDeltas_AreIgnored()
    {
        var r = Aggregate(Start,
            """{"type":"ping"}""",
            """{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"a"}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"future_delta","x":1}}""",
            """{"type":"content_block_delta","index":5,"delta":{"type":"text_delta","text":"lost"}}""",
            """{"type":"content_block_stop","index":0}""",
            """{"type":"some_future_event"}""",
            Stop).Response;

        Assert.Equal("a", r.Text);
        Assert.True(r.Completed);
    }

    [Fact]
    public void StreamWithoutMessageStop_IsNotCompleted()
    {
        var r = Aggregate(Start,
            """{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"partial"}}""").Response;

        Assert.False(r.Completed);
        Assert.Equal("partial", r.Text);
    }

    [Fact]
    public void TextAndThinkingSoFar_AreReadableWhileStreaming_AndSetOnTheBlocksWhenTheyStop()
    {
        var seen = new List<(int Position, bool Thinking, string SoFar)>();
        var aggregator = new StreamAggregator
        {
            OnDelta = (response, position, kind, _) =>
                seen.Add((position, kind == StreamedDelta.Thinking, response.BlockText(position, kind == StreamedDelta.Thinking ? "thinking" : "text")!)),
        };
        var events = new List<string>
        {
            Start,
            """{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":"","signature":""}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"Let me "}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"think."}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"signature_delta","signature":"sig"}}""",
            """{"type":"content_block_stop","index":0}""",
            """{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}""",
        };
        for (var i = 0; i < 300; i++)
        {
            events.Add($$$"""{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"{{{i}}} "}}""");
        }

        foreach (var e in events)
        {
            aggregator.Add(JsonDocument.Parse(e).RootElement);
        }

        var r = aggregator.Response;
        var expected = string.Concat(Enumerable.Range(0, 300).Select(i => $"{i} "));
        Assert.Equal("Let me think.", (string?)r.Blocks[0]["thinking"]);
        Assert.Equal("sig", (string?)r.Blocks[0]["signature"]);
        Assert.Equal((0, true, "Let me "), seen[0]);
        Assert.Equal((0, true, "Let me think."), seen[1]);
        Assert.Equal((1, false, "0 1 2 "), seen[4]);
        Assert.Equal(expected, r.BlockText(1, "text"));

        aggregator.Add(JsonDocument.Parse("""{"type":"content_block_stop","index":1}""").RootElement);
        aggregator.Add(JsonDocument.Parse(Stop).RootElement);

        Assert.Equal(expected, (string?)r.Blocks[1]["text"]);
        Assert.Equal(expected, r.Text);
    }

    [Fact]
    public void ToolInputDeltas_AreReportedWithTheInputSoFar_UntilTheBlockStops()
    {
        var seen = new List<(int Position, StreamedDelta Kind, string Delta, string? SoFar)>();
        var aggregator = new StreamAggregator { OnDelta = (response, position, kind, delta) => seen.Add((position, kind, delta, response.PartialInput(position))) };
        foreach (var e in new[]
                 {
                     Start,
                     """{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}""",
                     """{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Writing."}}""",
                     """{"type":"content_block_stop","index":0}""",
                     """{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"write_note","input":{}}}""",
                     """{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":""}}""",
                     """{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"text\": \"a"}}""",
                     """{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"b\"}"}}""",
                 })
        {
            aggregator.Add(JsonDocument.Parse(e).RootElement);
        }

        var r = aggregator.Response;
        Assert.Equal((0, StreamedDelta.Text, "Writing.", null), seen[0]);
        Assert.Equal((1, StreamedDelta.ToolInput, "", ""), seen[1]);
        Assert.Equal((1, StreamedDelta.ToolInput, "{\"text\": \"a", "{\"text\": \"a"), seen[2]);
        Assert.Equal((1, StreamedDelta.ToolInput, "b\"}", "{\"text\": \"ab\"}"), seen[3]);
        Assert.Null(r.PartialInput(0));

        aggregator.Add(JsonDocument.Parse("""{"type":"content_block_stop","index":1}""").RootElement);

        // Stopped: the parsed input is on the block, and nothing is partial any more.
        Assert.Null(r.PartialInput(1));
        Assert.Equal("ab", (string?)r.Blocks[1]["input"]!["text"]);
    }

    [Fact]
    public void BlocksWithoutDeltas_KeepTheirJson()
    {
        var r = Aggregate(Start,
            """{"type":"content_block_start","index":0,"content_block":{"type":"text"}}""",
            """{"type":"content_block_stop","index":0}""",
            """{"type":"content_block_start","index":1,"content_block":{"type":"text","text":"whole"}}""",
            Stop).Response;

        Assert.Equal("""{"type":"text"}""", r.Blocks[0].ToJsonString());
        Assert.Equal("""{"type":"text","text":"whole"}""", r.Blocks[1].ToJsonString());
    }

    [Fact]
    public void UnpairedSurrogateEscapes_InToolInputTextAndThinking_BecomeTheReplacementCharacter_PairsStay()
    {
        // Tool inputs are JSON text the model writes: "\ud800" in it is an unpaired surrogate System.Text.Json refuses to read.
        var r = Aggregate(Start,
            """{"type":"content_block_start","index":0,"content_block":{"type":"thinking","thinking":""}}""",
            """{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"t\udc00"}}""",
            """{"type":"content_block_stop","index":0}""",
            """{"type":"content_block_start","index":1,"content_block":{"type":"text","text":""}}""",
            """{"type":"content_block_delta","index":1,"delta":{"type":"text_delta","text":"a\ud800b \ud83d\ude00"}}""",
            """{"type":"content_block_stop","index":1}""",
            """{"type":"content_block_start","index":2,"content_block":{"type":"tool_use","id":"toolu_1","name":"echo","input":{}}}""",
            """{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"{\"te\\ud800xt\": \"x\\ud800"}}""",
            """{"type":"content_block_delta","index":2,"delta":{"type":"input_json_delta","partial_json":"y\\\\ud800 \\ud83d\\ude00\"}"}}""",
            """{"type":"content_block_stop","index":2}""",
            Stop).Response;

        Assert.Equal("t\uFFFD", (string?)r.Blocks[0]["thinking"]);
        Assert.Equal("a\uFFFDb \U0001F600", (string?)r.Blocks[1]["text"]);
        var input = r.Blocks[2]["input"]!.AsObject();
        // An escaped backslash before "ud800" is text, not an escape; a valid pair stays the emoji.
        Assert.Equal("x\uFFFDy\\ud800 \U0001F600", (string?)input["te\uFFFDxt"]);
        Assert.Empty(r.TruncatedToolUses);
    }

    [Fact]
    public void UnpairedSurrogateEscapes_InABatchResultsToolInput_BecomeTheReplacementCharacter()
    {
        using var message = JsonDocument.Parse("""
            {"id":"msg_1","model":"claude-sonnet-4-5","stop_reason":"tool_use","content":[
              {"type":"tool_use","id":"toolu_1","name":"echo","input":{"text":"x\udfffy"}}],"usage":{"input_tokens":1,"output_tokens":1}}
            """);

        var r = ModelResponse.FromMessage(message.RootElement);

        Assert.Equal("x\uFFFDy", (string?)r.Blocks[0]["input"]!["text"]);
    }
}
