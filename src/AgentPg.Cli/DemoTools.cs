using System.ComponentModel;
using System.Globalization;

namespace AgentPg.Cli;

/// <summary>The tools <c>--fake</c> registers (and gives the agent it creates): deterministic stand-ins that the bundled demo
/// model knows how to call.</summary>
internal static class DemoTools
{
    private static readonly string[] s_skies = ["sunny", "partly cloudy", "overcast", "light rain", "clear and breezy"];

    public static IReadOnlyList<string> Names { get; } = ["get_weather", "calculate"];

    public static IReadOnlyList<ITool> All { get; } =
    [
        FunctionTool.Create("get_weather", "Gets today's weather forecast for a city (made up, deterministic).",
            ([Description("The city, for example Paris")] string city) =>
            {
                var seed = city.ToUpperInvariant().Sum(c => c);
                return $"{city}: {s_skies[seed % s_skies.Length]}, {8 + seed % 20} °C";
            }),
        FunctionTool.Create("calculate", "Evaluates an arithmetic expression with + - * / and parentheses.",
            ([Description("The expression, for example (17 + 3) * 23")] string expression)
                => new Calculator(expression).Evaluate().ToString(CultureInfo.InvariantCulture)),
    ];

    /// <summary>A recursive-descent evaluator for + - * / and parentheses over decimals; model input is untrusted, so it
    /// bounds the length and rejects anything else with a message the model can act on.</summary>
    private sealed class Calculator(string text)
    {
        private int _position;

        public decimal Evaluate()
        {
            if (text.Length > 500)
            {
                throw new ArgumentException("The expression is too long (at most 500 characters).");
            }

            var value = Sum();
            SkipSpaces();
            return _position == text.Length ? value : throw new ArgumentException($"Unexpected '{text[_position]}' at position {_position + 1}.");
        }

        private decimal Sum()
        {
            var value = Product();
            while (Accept('+') || Accept('-'))
            {
                var op = text[_position - 1];
                var right = Product();
                value = op == '+' ? value + right : value - right;
            }

            return value;
        }

        private decimal Product()
        {
            var value = Factor();
            while (Accept('*') || Accept('/'))
            {
                var op = text[_position - 1];
                var right = Factor();
                value = op == '*' ? value * right : right == 0 ? throw new ArgumentException("Cannot divide by zero.") : value / right;
            }

            return value;
        }

        private decimal Factor()
        {
            if (Accept('-'))
            {
                return -Factor();
            }

            if (Accept('('))
            {
                var value = Sum();
                return Accept(')') ? value : throw new ArgumentException("A closing parenthesis is missing.");
            }

            SkipSpaces();
            var start = _position;
            while (_position < text.Length && (char.IsAsciiDigit(text[_position]) || text[_position] == '.'))
            {
                _position++;
            }

            return decimal.TryParse(text.AsSpan(start, _position - start), NumberStyles.Number, CultureInfo.InvariantCulture, out var number)
                ? number
                : throw new ArgumentException($"A number was expected at position {start + 1}.");
        }

        private bool Accept(char c)
        {
            SkipSpaces();
            if (_position < text.Length && text[_position] == c)
            {
                _position++;
                return true;
            }

            return false;
        }

        private void SkipSpaces()
        {
            while (_position < text.Length && char.IsWhiteSpace(text[_position]))
            {
                _position++;
            }
        }
    }
}
