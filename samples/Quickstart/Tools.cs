using System.ComponentModel;
using AgentPg;

/// <summary>The quick start's tools, made from plain delegates: <see cref="FunctionTool"/> derives each input schema
/// from the parameters (names, types, [Description]).</summary>
internal static class Tools
{
    private static readonly string[] s_skies = ["sunny", "partly cloudy", "overcast", "light rain", "clear and breezy"];

    public static FunctionTool Weather { get; } = FunctionTool.Create(
        "get_weather",
        "Gets today's weather forecast for a city.",
        ([Description("The city, for example Paris")] string city) =>
        {
            // Made up, but deterministic: the same city always gets the same forecast.
            var seed = city.ToUpperInvariant().Sum(c => c);
            return $"{city}: {s_skies[seed % s_skies.Length]}, {8 + seed % 20} °C, wind {5 + seed % 25} km/h";
        });

    public static FunctionTool Calculator { get; } = FunctionTool.Create(
        "calculate",
        "Calculates a op b for two numbers and one arithmetic operation.",
        ([Description("The first operand")] decimal a,
         [Description("The operation: +, -, * or /")] string operation,
         [Description("The second operand")] decimal b) => operation.Trim() switch
        {
            "+" => a + b,
            "-" => a - b,
            "*" or "x" or "×" => a * b,
            "/" or "÷" => b == 0 ? throw new ArgumentException("Cannot divide by zero.") : a / b,
            _ => throw new ArgumentException($"Unknown operation '{operation}': use +, -, * or /."),
        });
}
