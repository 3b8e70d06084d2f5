using System.Text.Json;
using Anthropic;
using Anthropic.Models.Messages;

namespace AgentPg.Testing.Tests;

public sealed class FakeModelsTests
{
    private static readonly Tool s_weather = Sdk.Tool("get_weather", "Get the current weather for a city", "location");

    private static readonly Tool s_calculator = new()
    {
        Name = "calculator",
        Description = "Evaluate an arithmetic expression",
        InputSchema = new InputSchema
        {
            Properties = new Dictionary<string, JsonElement> { ["expression"] = JsonSerializer.SerializeToElement(new { type = "string" }) },
            Required = ["expression"],
        },
    };

    [Fact]
    public async Task Demo_WeatherQuestion_CallsTheWeatherToolThenQuotesTheResult()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = FakeModels.Demo });
        using var client = claude.CreateClient();
        var ask = Sdk.Ask("What's the weather in San Francisco, CA today?") with { Tools = [s_weather] };

        var call = await client.Messages.CreateStreaming(ask).Aggregate();
        var toolUse = Assert.Single(Sdk.ToolUses(call));
        var final = await client.Messages.Create(ask with
        {
            Messages =
            [
                .. ask.Messages,
                new AssistantMessageParam(call.Content.Select(b => new ContentBlockParam(b.Json)).ToList()),
                new UserMessageParam(new List<ContentBlockParam> { new ToolResultBlockParam(toolUse.ID) { Content = "18 C, sunny" } }),
            ],
        });

        Assert.Equal("tool_use", call.StopReason!.Raw());
        Assert.Equal("get_weather", toolUse.Name);
        Assert.Equal("San Francisco, CA", toolUse.Input["location"].GetString());
        Assert.Equal("end_turn", final.StopReason!.Raw());
        Assert.Contains("get_weather returned \"18 C, sunny\"", Sdk.Text(final));
    }

    [Fact]
    public async Task Demo_ArithmeticWithCalculator_CallsItWithTheExpression()
    {
        await using var claude = await FakeClaudeServer.StartAsync();
        claude.UseDemoModel();
        using var client = claude.CreateClient();

        var call = await client.Messages.Create(Sdk.Ask("What is 12 * (3 + 4)?") with { Tools = [s_weather, s_calculator] });

        var toolUse = Assert.Single(Sdk.ToolUses(call));
        Assert.Equal("calculator", toolUse.Name);
        Assert.Equal("12 * (3 + 4)", toolUse.Input["expression"].GetString());
    }

    [Fact]
    public void Demo_WeatherAndMath_CallsBothToolsInParallelUnlessDisabled()
    {
        var request = Request("What's the weather in Paris, and what is 17 times 23?", [Weather(), Calculator()]);

        var parallel = FakeModels.Demo(request);
        var single = FakeModels.Demo(request with { ToolChoice = Json("""{"type":"auto","disable_parallel_tool_use":true}""") });

        Assert.Equal(["get_weather", "calculator"], parallel.Content.OfType<FakeToolUseBlock>().Select(t => t.Name));
        Assert.Equal("Paris", parallel.Content.OfType<FakeToolUseBlock>().First().Input.GetProperty("location").GetString());
        Assert.Equal("17 * 23", parallel.Content.OfType<FakeToolUseBlock>().Last().Input.GetProperty("expression").GetString());
        Assert.Equal(FakeStopReason.ToolUse, parallel.StopReason);
        Assert.Single(single.Content.OfType<FakeToolUseBlock>());
    }

    [Fact]
    public void Demo_NumericCalculatorSchema_FillsOperandsAndOperation()
    {
        var calculator = new FakeTool("calc")
        {
            Description = "Basic math",
            InputSchema = Json("""{"type":"object","properties":{"a":{"type":"number"},"b":{"type":"number"},"operation":{"type":"string","enum":["add","subtract","multiply","divide"]}},"required":["a","b","operation"]}"""),
        };

        var reply = FakeModels.Demo(Request("Please compute 6.5 / 2", [calculator]));

        var input = Assert.IsType<FakeToolUseBlock>(reply.Content[^1]).Input;
        Assert.Equal(6.5, input.GetProperty("a").GetDouble());
        Assert.Equal(2, input.GetProperty("b").GetDouble());
        Assert.Equal("divide", input.GetProperty("operation").GetString());
    }

    [Fact]
    public void Demo_ToolNamedInThePrompt_IsCalledWithInputFromTheSchema()
    {
        var lookup = new FakeTool("lookup_order")
        {
            InputSchema = Json("""{"type":"object","properties":{"query":{"type":"string"},"limit":{"type":"integer"},"verbose":{"type":"boolean"}},"required":["query","limit"]}"""),
        };

        var reply = FakeModels.Demo(Request("Use lookup order for order 42", [lookup]));

        var input = Assert.IsType<FakeToolUseBlock>(reply.Content[^1]).Input;
        Assert.Equal("Use lookup order for order 42", input.GetProperty("query").GetString());
        Assert.Equal(42, input.GetProperty("limit").GetInt32());
        Assert.False(input.TryGetProperty("verbose", out _));
    }

    [Fact]
    public void Demo_ToolChoice_IsHonoured()
    {
        var tools = new[] { Weather(), Calculator() };

        var none = FakeModels.Demo(Request("Weather in Rome?", tools) with { ToolChoice = Json("""{"type":"none"}""") });
        var forced = FakeModels.Demo(Request("Hello", tools) with { ToolChoice = Json("""{"type":"tool","name":"calculator"}""") });
        var any = FakeModels.Demo(Request("Hello", tools) with { ToolChoice = Json("""{"type":"any"}""") });

        Assert.Empty(none.Content.OfType<FakeToolUseBlock>());
        Assert.Equal("calculator", forced.Content.OfType<FakeToolUseBlock>().Single().Name);
        Assert.Equal("get_weather", any.Content.OfType<FakeToolUseBlock>().Single().Name);
    }

    [Fact]
    public async Task Demo_NoSuitableTool_EchoesThePromptDeterministically()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = FakeModels.Demo });
        using var client = claude.CreateClient();

        var first = await client.Messages.Create(Sdk.Ask("Tell me a joke") with { Tools = [s_weather] });
        var second = await client.Messages.CreateStreaming(Sdk.Ask("Tell me a joke")).Aggregate();

        Assert.Equal("This is the FakeClaudeServer demo model. You said: \"Tell me a joke\"", Sdk.Text(first));
        Assert.Equal(Sdk.Text(first), Sdk.Text(second));
        Assert.Equal("end_turn", first.StopReason!.Raw());
    }

    [Fact]
    public async Task Demo_ThinkingEnabled_StartsWithASignedThinkingBlock()
    {
        await using var claude = await FakeClaudeServer.StartAsync(new FakeClaudeServerOptions { Responder = FakeModels.Demo });
        using var client = claude.CreateClient();

        var message = await client.Messages.Create(Sdk.Ask("Weather in Oslo?") with { MaxTokens = 4096, Thinking = new ThinkingConfigEnabled(2048), Tools = [s_weather] });

        Assert.True(message.Content[0].TryPickThinking(out var thinking));
        Assert.False(string.IsNullOrEmpty(thinking.Signature));
        Assert.Equal("Oslo", Sdk.ToolUses(message).Single().Input["location"].GetString());
    }

    private static FakeRequest Request(string prompt, FakeTool[] tools) => new()
    {
        Model = Sdk.Model,
        LastUserText = prompt,
        Tools = tools,
    };

    private static FakeTool Weather() => new("get_weather")
    {
        Description = "Current weather",
        InputSchema = Json("""{"type":"object","properties":{"location":{"type":"string"},"unit":{"type":"string","enum":["celsius","fahrenheit"]}},"required":["location"]}"""),
    };

    private static FakeTool Calculator() => new("calculator")
    {
        Description = "Evaluate arithmetic",
        InputSchema = Json("""{"type":"object","properties":{"expression":{"type":"string"}},"required":["expression"]}"""),
    };

    private static JsonElement Json(string json) => JsonSerializer.Deserialize<JsonElement>(json);
}
