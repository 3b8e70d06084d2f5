using System.Text.Json;
using System.Text.Json.Nodes;
using AgentPg.Tools;

namespace AgentPg.Tests.Unit.Tools;

public sealed class DelegateToolTests
{
    [Fact]
    public void InputSchema_IsTheValidatedSchema()
        => Assert.True(JsonNode.DeepEquals(DelegateTool.Schema.ToJsonObject(), DelegateTool.InputSchema()));

    [Fact]
    public void InputSchema_AsksForANonEmptyTask()
    {
        var schema = DelegateTool.InputSchema();

        Assert.Equal("object", (string?)schema["type"]);
        Assert.Equal("string", (string?)schema["properties"]!["task"]!["type"]);
        Assert.Equal(1, (int?)schema["properties"]!["task"]!["minLength"]);
        Assert.Equal(["task"], schema["required"]!.AsArray().Select(n => (string?)n));
    }

    [Fact]
    public void InputSchema_IsAFreshCopyEachTime()
    {
        var first = DelegateTool.InputSchema();
        first["properties"]!["task"]!["type"] = "number";

        Assert.Equal("string", (string?)DelegateTool.InputSchema()["properties"]!["task"]!["type"]);
    }

    [Theory]
    [InlineData("""{"task":"sum the invoices"}""", null)]
    [InlineData("""{"task":""}""", "at least 1 character")]
    [InlineData("""{}""", "task")]
    public void Schema_ValidatesTheModelsInput(string input, string? problem)
    {
        var error = ToolInputValidator.Validate("helper", DelegateTool.Schema, JsonDocument.Parse(input).RootElement);

        if (problem is null)
        {
            Assert.Null(error);
        }
        else
        {
            Assert.Contains(problem, error, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("""{"task":"sum the invoices"}""", "sum the invoices")]
    [InlineData("""{"task":7}""", "")]
    [InlineData("""{}""", "")]
    [InlineData("""[]""", "")]
    public void TaskOf_ReadsTheTask(string input, string task)
        => Assert.Equal(task, DelegateTool.TaskOf(JsonDocument.Parse(input).RootElement));
}
