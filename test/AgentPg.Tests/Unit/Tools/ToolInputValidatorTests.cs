using System.Text.Json;
using AgentPg.Tools;
using AgentPg.Workers;

namespace AgentPg.Tests.Unit.Tools;

public sealed class ToolInputValidatorTests
{
    private static readonly ToolSchema s_schema = new()
    {
        Properties = new Dictionary<string, PropertyDef>
        {
            ["name"] = new() { Type = "string", MinLength = 2, MaxLength = 5, Pattern = "^[a-z]+$" },
            ["count"] = new() { Type = "integer", Minimum = 1, Maximum = 10 },
            ["ratio"] = new() { Type = "number", ExclusiveMinimum = 0, ExclusiveMaximum = 1 },
            ["flag"] = new() { Type = "boolean" },
            ["mode"] = new() { Type = "string", Enum = ["fast", "slow"] },
            ["tags"] = new() { Type = "array", MinItems = 1, MaxItems = 2, Items = new PropertyDef { Type = "string" } },
            ["address"] = new()
            {
                Type = "object",
                Properties = new Dictionary<string, PropertyDef> { ["zip"] = new() { Type = "string" } },
                Required = ["zip"],
            },
            ["note"] = new() { Type = "string", Nullable = true },
        },
        Required = ["name"],
    };

    private static string? Validate(string json)
    {
        using var doc = JsonDocument.Parse(json);
        return ToolInputValidator.Validate("t", s_schema, doc.RootElement);
    }

    [Fact]
    public void Validate_ValidInput_ReturnsNull()
    {
        Assert.Null(Validate("""{"name":"abc","count":3,"ratio":0.5,"flag":true,"mode":"fast","tags":["x"],"address":{"zip":"1"},"note":null,"extra":1}"""));
        Assert.Null(Validate("""{"name":"abc","count":3.0}"""));
    }

    [Theory]
    [InlineData("""[]""", "the input must be a JSON object, not an array")]
    [InlineData("""{}""", "'name' is required")]
    [InlineData("""{"name":"a"}""", "'name' must be at least 2 characters long (is 1)")]
    [InlineData("""{"name":"abcdef"}""", "'name' must be at most 5 characters long (is 6)")]
    [InlineData("""{"name":"AB"}""", "'name' must match the pattern ^[a-z]+$")]
    [InlineData("""{"name":5}""", "'name' must be a string, not a number")]
    [InlineData("""{"name":null}""", "'name' must be a string, not null")]
    [InlineData("""{"name":"ab","count":2.5}""", "'count' must be an integer, not a number")]
    [InlineData("""{"name":"ab","count":0}""", "'count' must be at least 1 (got 0)")]
    [InlineData("""{"name":"ab","count":11}""", "'count' must be at most 10 (got 11)")]
    [InlineData("""{"name":"ab","ratio":0}""", "'ratio' must be greater than 0 (got 0)")]
    [InlineData("""{"name":"ab","ratio":1}""", "'ratio' must be less than 1 (got 1)")]
    [InlineData("""{"name":"ab","flag":"yes"}""", "'flag' must be a boolean, not a string")]
    [InlineData("""{"name":"ab","mode":"medium"}""", "'mode' must be one of [fast, slow] (got \"medium\")")]
    [InlineData("""{"name":"ab","tags":[]}""", "'tags' must have at least 1 items (has 0)")]
    [InlineData("""{"name":"ab","tags":["a","b","c"]}""", "'tags' must have at most 2 items (has 3)")]
    [InlineData("""{"name":"ab","tags":["a",2]}""", "'tags[1]' must be a string, not a number")]
    [InlineData("""{"name":"ab","address":{}}""", "'address.zip' is required")]
    [InlineData("""{"name":"ab","address":{"zip":1}}""", "'address.zip' must be a string, not a number")]
    public void Validate_InvalidInput_SaysWhatIsWrong(string json, string expected)
    {
        var message = Validate(json);
        Assert.NotNull(message);
        Assert.Contains(expected, message, StringComparison.Ordinal);
        Assert.StartsWith("Invalid input for tool 't': ", message, StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_StringLength_CountsCharactersNotBytes()
    {
        var schema = new ToolSchema { Properties = new Dictionary<string, PropertyDef> { ["s"] = new() { Type = "string", MaxLength = 3 } } };
        using var ok = JsonDocument.Parse("""{"s":"été"}""");
        using var tooLong = JsonDocument.Parse("""{"s":"étés"}""");
        Assert.Null(ToolInputValidator.Validate("t", schema, ok.RootElement));
        Assert.NotNull(ToolInputValidator.Validate("t", schema, tooLong.RootElement));
    }

    [Fact]
    public void Validate_ManyProblems_ReportsAllOfThem()
    {
        var message = Validate("""{"count":0,"flag":1,"mode":"x"}""");
        Assert.Contains("'name' is required", message, StringComparison.Ordinal);
        Assert.Contains("'count' must be at least 1", message, StringComparison.Ordinal);
        Assert.Contains("'flag' must be a boolean", message, StringComparison.Ordinal);
        Assert.Contains("'mode' must be one of", message, StringComparison.Ordinal);
    }
}

public sealed class RetryBackoffTests
{
    [Fact]
    public void NextDelay_NoJitter_IsImmediate()
        => Assert.Equal(TimeSpan.Zero, RetryBackoff.NextDelay(3, 0));

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 16)]
    [InlineData(3, 81)]
    [InlineData(4, 256)]
    public void NextDelay_WithJitter_IsAttemptToTheFourthSecondsPlusOrMinusJitter(int attempt, double seconds)
    {
        for (var i = 0; i < 50; i++)
        {
            var delay = RetryBackoff.NextDelay(attempt, 0.1).TotalSeconds;
            Assert.InRange(delay, Math.Max(seconds * 0.9, 1), seconds * 1.1);
        }
    }
}

public sealed class ToolSchemaTests
{
    [Fact]
    public void FromJsonSchema_ThenToJson_KeepsEverySupportedKeyword()
    {
        const string json = """
            {"type":"object","description":"d","properties":{
              "a":{"type":["string","null"],"description":"x","enum":["p","q"],"minLength":1,"maxLength":3,"pattern":"^p"},
              "b":{"type":"number","minimum":1.5,"maximum":3,"exclusiveMinimum":0,"exclusiveMaximum":9,"default":2},
              "c":{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":4},
              "d":{"type":"object","properties":{"e":{"type":"boolean"}},"required":["e"]},
              "f":{"anyOf":[{"type":"string"},{"type":"integer"}]}},
             "required":["a"]}
            """;
        using var doc = JsonDocument.Parse(json);

        var schema = ToolSchema.FromJsonSchema(doc.RootElement);
        var back = JsonDocument.Parse(schema.ToJson()).RootElement;

        Assert.True(schema.Properties["a"].Nullable);
        Assert.Equal("string", schema.Properties["a"].Type);
        Assert.Null(schema.Properties["f"].Type);
        Assert.Equal(["a"], schema.Required);
        Assert.Equal("[\"string\",\"null\"]", back.GetProperty("properties").GetProperty("a").GetProperty("type").GetRawText());
        Assert.Equal(1.5, back.GetProperty("properties").GetProperty("b").GetProperty("minimum").GetDouble());
        Assert.Equal("integer", back.GetProperty("properties").GetProperty("c").GetProperty("items").GetProperty("type").GetString());
        Assert.Equal("e", back.GetProperty("properties").GetProperty("d").GetProperty("required")[0].GetString());
    }

    [Fact]
    public void FromJsonSchema_NotAnObjectSchema_Throws()
    {
        using var doc = JsonDocument.Parse("""{"type":"string"}""");
        Assert.Throws<ArgumentException>(() => ToolSchema.FromJsonSchema(doc.RootElement));
    }
}
