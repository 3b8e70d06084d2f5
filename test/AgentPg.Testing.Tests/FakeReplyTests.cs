using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.Testing.Tests;

public sealed class FakeReplyTests
{
    [Fact]
    public void Message_WithToolUse_StopsForToolUse()
    {
        var reply = FakeReply.Message(FakeContentBlock.Text("Checking."), FakeContentBlock.ToolUse("get_weather", new { location = "Paris" }));

        Assert.Equal(FakeStopReason.ToolUse, reply.StopReason);
        Assert.Equal(FakeStopReason.EndTurn, FakeReply.Text("hi").StopReason);
        Assert.Null(reply.ApiError);
    }

    [Fact]
    public void ToolUse_AcceptsObjectsDictionariesNodesAndJsonText()
    {
        var fromAnonymous = FakeContentBlock.ToolUse("t", new { a = 1 });
        var fromDictionary = FakeContentBlock.ToolUse("t", new Dictionary<string, object> { ["a"] = 1 });
        var fromNode = FakeContentBlock.ToolUse("t", new JsonObject { ["a"] = 1 });
        var fromText = FakeContentBlock.ToolUse("t", """{"a":1}""");
        var empty = FakeContentBlock.ToolUse("t");

        Assert.All(new[] { fromAnonymous, fromDictionary, fromNode, fromText }, b => Assert.Equal(1, b.Input.GetProperty("a").GetInt32()));
        Assert.Equal(JsonValueKind.Object, empty.Input.ValueKind);
        Assert.Throws<ArgumentException>(() => FakeContentBlock.ToolUse("t", "[1,2]"));
        Assert.Throws<ArgumentException>(() => FakeContentBlock.ToolUse("t", "not json"));
        Assert.Throws<ArgumentException>(() => FakeContentBlock.ToolUse("", new { }));
    }

    [Theory]
    [InlineData("""{"location": "San Francisco, CA", "unit": "fahr""", """{"location":"San Francisco, CA"}""")]
    [InlineData("""{"location": "Par""", "{}")]
    [InlineData("""{"a": 1, "b": {"c": [1, 2""", """{"a":1}""")]
    [InlineData("""{"a": 1, "b": {"c": [1, 2]}, "d": 12""", """{"a":1,"b":{"c":[1,2]}}""")]
    [InlineData("""{"a": 1}""", """{"a":1}""")]
    [InlineData("", "{}")]
    [InlineData("{", "{}")]
    public void TruncatedToolUse_KeepsTheCompleteTopLevelMembers(string partial, string expectedInput)
    {
        var block = FakeContentBlock.TruncatedToolUse("get_weather", partial);

        Assert.Equal(expectedInput, JsonSerializer.Serialize(block.Input));
        Assert.Equal(partial, block.PartialInputJson);
    }

    [Fact]
    public void Error_ValidatesItsArguments()
    {
        var reply = FakeReply.Error(529, "overloaded_error", "Overloaded", retryAfter: TimeSpan.FromMilliseconds(10), shouldRetry: true);

        Assert.Equal(new FakeApiError(529, "overloaded_error", "Overloaded") { RetryAfter = TimeSpan.FromMilliseconds(10), ShouldRetry = true }, reply.ApiError);
        Assert.Throws<ArgumentOutOfRangeException>(() => FakeReply.Error(200, "api_error", "no"));
        Assert.Throws<ArgumentException>(() => FakeReply.Error(500, "", "no"));
    }

    [Fact]
    public void Thinking_WithoutSignature_DerivesAStableOne()
    {
        Assert.Equal(FakeContentBlock.Thinking("hmm").Signature, FakeContentBlock.Thinking("hmm").Signature);
        Assert.NotEqual(FakeContentBlock.Thinking("hmm").Signature, FakeContentBlock.Thinking("hmmm").Signature);
    }

    [Fact]
    public void Raw_RequiresAnObjectWithAType()
    {
        var block = FakeContentBlock.Raw(JsonSerializer.SerializeToElement(new { type = "server_tool_use", id = "srvtoolu_1", name = "web_search", input = new { query = "x" } }));

        Assert.Equal("server_tool_use", block.Type);
        Assert.Throws<ArgumentException>(() => FakeContentBlock.Raw(JsonSerializer.SerializeToElement(new { id = 1 })));
    }
}
