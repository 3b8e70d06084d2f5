using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;

namespace AgentPg.Testing;

/// <summary>The deterministic demo model behind <see cref="FakeModels.Demo"/>.</summary>
internal static partial class DemoModel
{
    private static readonly string[] s_weatherWords = ["weather", "temperature", "forecast", "rain", "snow", "sunny", "wind"];
    private static readonly string[] s_calculatorWords = ["calc", "math", "arithmetic", "expression", "evaluate", "compute"];
    private static readonly string[] s_locationNames = ["location", "city", "place", "town", "where", "address", "region", "country"];
    private static readonly string[] s_expressionNames = ["expression", "expr", "formula", "equation", "calculation", "math", "input"];
    private static readonly string[] s_operatorNames = ["operation", "operator", "op"];
    private static readonly string[] s_queryNames = ["query", "q", "text", "prompt", "question", "search", "input", "message"];

    public static FakeReply Reply(FakeRequest request)
    {
        ArgumentNullException.ThrowIfNull(request);
        var blocks = new List<FakeContentBlock>();
        var thinkingEnabled = request.Thinking is { } thinking && FakeJson.GetString(thinking, "type") is "enabled" or "adaptive";

        if (request.ToolResults.Count > 0)
        {
            var quotes = request.ToolResults.Select(r => r.IsError
                ? $"{r.ToolName ?? r.ToolUseId} failed with \"{r.Content}\""
                : $"{r.ToolName ?? r.ToolUseId} returned \"{r.Content}\"");
            if (thinkingEnabled)
            {
                blocks.Add(FakeContentBlock.Thinking("The tool results are back; I will summarise them for the user."));
            }

            blocks.Add(FakeContentBlock.Text($"Here is what I found: {string.Join("; ", quotes)}."));
            return FakeReply.Message([.. blocks]);
        }

        var prompt = request.LastUserText;
        var calls = PlanToolCalls(request, prompt);
        if (thinkingEnabled)
        {
            blocks.Add(FakeContentBlock.Thinking(calls.Count > 0
                ? $"The user needs {string.Join(" and ", calls.Select(c => c.Name))}; I will call {(calls.Count == 1 ? "it" : "them")}."
                : "No tool is needed; I will answer directly."));
        }

        if (calls.Count > 0)
        {
            blocks.Add(FakeContentBlock.Text(calls.Count == 1 ? $"Let me use {calls[0].Name}." : $"Let me use {string.Join(" and ", calls.Select(c => c.Name))}."));
            blocks.AddRange(calls);
            return FakeReply.Message([.. blocks]);
        }

        var echo = prompt.Length == 0 ? "(no text)" : prompt.Length <= 200 ? prompt : string.Concat(prompt.AsSpan(0, 197), "...");
        blocks.Add(FakeContentBlock.Text($"This is the FakeClaudeServer demo model. You said: \"{echo}\""));
        return FakeReply.Message([.. blocks]);
    }

    private static List<FakeToolUseBlock> PlanToolCalls(FakeRequest request, string prompt)
    {
        var clientTools = request.Tools.Where(t => t.InputSchema is not null).ToList();
        var choiceType = request.ToolChoice is { } choice ? FakeJson.GetString(choice, "type") : null;
        var disableParallel = request.ToolChoice is { } c && c.TryGetProperty("disable_parallel_tool_use", out var flag) && flag.ValueKind == JsonValueKind.True;
        if (clientTools.Count == 0 || choiceType == "none")
        {
            return [];
        }

        var normalized = NormalizeArithmetic(prompt);
        var expression = ExpressionPattern().Match(normalized) is { Success: true } match ? match.Value.Trim() : null;
        var asksWeather = ContainsAny(prompt, s_weatherWords);

        IEnumerable<FakeTool> chosen;
        if (choiceType == "tool")
        {
            var name = FakeJson.GetString(request.ToolChoice!.Value, "name");
            chosen = clientTools.Where(t => t.Name == name);
        }
        else
        {
            chosen = clientTools.Where(tool =>
                (asksWeather && IsWeatherTool(tool))
                || (expression is not null && IsCalculatorTool(tool))
                || Mentions(prompt, tool.Name)).ToList();
            if (choiceType == "any" && !chosen.Any())
            {
                chosen = clientTools.Take(1);
            }
        }

        if (disableParallel)
        {
            chosen = chosen.Take(1);
        }

        return chosen.Select(tool => FakeContentBlock.ToolUse(tool.Name, InferInput(tool, prompt, expression))).ToList();
    }

    private static JsonObject InferInput(FakeTool tool, string prompt, string? expression)
    {
        var input = new JsonObject();
        var schema = tool.InputSchema!.Value;
        if (!FakeJson.TryGet(schema, "properties", out var properties) || properties.ValueKind != JsonValueKind.Object)
        {
            return input;
        }

        var required = FakeJson.TryGet(schema, "required", out var requiredElement) && requiredElement.ValueKind == JsonValueKind.Array
            ? requiredElement.EnumerateArray().Select(e => e.GetString()).OfType<string>().ToHashSet(StringComparer.Ordinal)
            : [];
        var numbers = new Queue<double>(NumberPattern().Matches(expression ?? prompt).Select(m => double.Parse(m.Value, CultureInfo.InvariantCulture)));
        var symbol = expression is null ? null : OperatorPattern().Match(expression) is { Success: true } op ? op.Value.Trim() : null;

        foreach (var property in properties.EnumerateObject())
        {
            var name = property.Name;
            var lower = name.ToLowerInvariant();
            var isLocation = s_locationNames.Any(lower.Contains);
            var isExpression = expression is not null && s_expressionNames.Contains(lower);
            var isOperator = symbol is not null && s_operatorNames.Contains(lower);
            if (!required.Contains(name) && !isLocation && !isExpression && !isOperator)
            {
                continue;
            }

            var definition = property.Value;
            if (FakeJson.TryGet(definition, "enum", out var values) && values.ValueKind == JsonValueKind.Array && values.GetArrayLength() > 0)
            {
                var options = values.EnumerateArray().ToList();
                var picked = isOperator ? options.FirstOrDefault(o => OperatorMatches(o, symbol!)) : default;
                input[name] = JsonSerializer.SerializeToNode(picked.ValueKind == JsonValueKind.Undefined ? options[0] : picked);
                continue;
            }

            switch (FakeJson.GetString(definition, "type"))
            {
                case "number":
                    input[name] = numbers.TryDequeue(out var number) ? number : 0;
                    break;
                case "integer":
                    input[name] = numbers.TryDequeue(out var integer) ? (long)integer : 0;
                    break;
                case "boolean":
                    input[name] = false;
                    break;
                case "array":
                    input[name] = new JsonArray();
                    break;
                case "object":
                    input[name] = new JsonObject();
                    break;
                default:
                    input[name] = isLocation ? Place(prompt)
                        : isExpression ? expression
                        : isOperator ? symbol
                        : s_queryNames.Contains(lower) ? prompt
                        : IsWeatherTool(tool) ? Place(prompt)
                        : prompt;
                    break;
            }
        }

        return input;
    }

    private static bool OperatorMatches(JsonElement option, string symbol)
    {
        var text = option.ValueKind == JsonValueKind.String ? option.GetString()!.ToLowerInvariant() : "";
        return symbol switch
        {
            "+" => text is "+" or "add" or "plus" or "sum" or "addition",
            "-" => text is "-" or "subtract" or "minus" or "sub" or "subtraction",
            "*" => text is "*" or "x" or "multiply" or "times" or "mul" or "multiplication",
            "/" => text is "/" or "divide" or "div" or "division",
            "^" => text is "^" or "pow" or "power" or "exponent",
            _ => false,
        };
    }

    private static string Place(string prompt) =>
        PlacePattern().Match(prompt) is { Success: true } match ? match.Groups[1].Value.TrimEnd(',', ' ') : "Paris";

    private static string NormalizeArithmetic(string prompt)
    {
        var text = new StringBuilder(prompt);
        text.Replace(" multiplied by ", " * ").Replace(" divided by ", " / ").Replace(" times ", " * ")
            .Replace(" plus ", " + ").Replace(" minus ", " - ").Replace('×', '*').Replace('÷', '/');
        return text.ToString();
    }

    private static bool IsWeatherTool(FakeTool tool) => ContainsAny(tool.Name + " " + tool.Description, s_weatherWords);

    private static bool IsCalculatorTool(FakeTool tool) => ContainsAny(tool.Name + " " + tool.Description, s_calculatorWords);

    private static bool Mentions(string prompt, string toolName) =>
        prompt.Contains(toolName, StringComparison.OrdinalIgnoreCase)
        || (toolName.Contains('_', StringComparison.Ordinal) && prompt.Contains(toolName.Replace('_', ' '), StringComparison.OrdinalIgnoreCase));

    private static bool ContainsAny(string text, string[] words) => words.Any(w => text.Contains(w, StringComparison.OrdinalIgnoreCase));

    [GeneratedRegex(@"\(*\s*\d+(?:\.\d+)?(?:\s*[-+*/^]\s*\(*\s*\d+(?:\.\d+)?\s*\)*)+", RegexOptions.CultureInvariant)]
    private static partial Regex ExpressionPattern();

    [GeneratedRegex(@"\d+(?:\.\d+)?", RegexOptions.CultureInvariant)]
    private static partial Regex NumberPattern();

    [GeneratedRegex(@"(?<=\d|\))\s*[-+*/^]", RegexOptions.CultureInvariant)]
    private static partial Regex OperatorPattern();

    [GeneratedRegex(@"\b(?:in|for|at)\s+((?:[A-Z][\p{L}.'-]*)(?:\s+[A-Z][\p{L}.'-]*)*(?:,\s*[A-Z]{2,}\b)?)", RegexOptions.CultureInvariant)]
    private static partial Regex PlacePattern();
}
