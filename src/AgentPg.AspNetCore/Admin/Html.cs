using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;
using System.Text.Encodings.Web;
using System.Text.Unicode;

namespace AgentPg.AspNetCore.Admin;

/// <summary>A fragment of HTML that is safe to write as is. The only ways to make one are <see cref="Of"/>, whose
/// interpolation holes are HTML-encoded unless they are <see cref="Html"/> themselves, and <see cref="Trusted"/> for
/// constant markup. Model and tool output therefore reach a page encoded by construction.</summary>
internal readonly struct Html
{
    // Encodes &, <, >, " and ' (so values are safe in text and in double-quoted attributes) but keeps readable Unicode.
    private static readonly HtmlEncoder s_encoder = HtmlEncoder.Create(UnicodeRanges.All);

    private readonly string? _value;

    private Html(string value) => _value = value;

    public static Html Empty => default;

    public string Value => _value ?? "";

    /// <summary>Markup written by this assembly, never data.</summary>
    public static Html Trusted(string markup) => new(markup);

    public static Html Of(ref Handler handler) => new(handler.ToStringAndClear());

    public static Html Text(string? text) => new(text is null ? "" : s_encoder.Encode(text));

    public static Html Join(IEnumerable<Html> parts)
    {
        var builder = new StringBuilder();
        foreach (var part in parts)
        {
            builder.Append(part.Value);
        }

        return new(builder.ToString());
    }

    public static Html When(bool condition, Html html) => condition ? html : Empty;

    public override string ToString() => Value;

    [InterpolatedStringHandler]
    public ref struct Handler
    {
        private StringBuilder? _builder;

        public Handler(int literalLength, int formattedCount) => _builder = new StringBuilder(literalLength + (formattedCount * 16));

        public readonly void AppendLiteral(string literal) => _builder!.Append(literal);

        public readonly void AppendFormatted(Html html) => _builder!.Append(html.Value);

        public readonly void AppendFormatted<T>(T value) => AppendFormatted(value, null);

        public readonly void AppendFormatted<T>(T value, string? format)
        {
            switch (value)
            {
                case null:
                    return;
                case Html html:
                    _builder!.Append(html.Value);
                    return;
                case IEnumerable<Html> many:
                    foreach (var part in many)
                    {
                        _builder!.Append(part.Value);
                    }

                    return;
                case IFormattable formattable:
                    _builder!.Append(s_encoder.Encode(formattable.ToString(format, CultureInfo.InvariantCulture)));
                    return;
                default:
                    _builder!.Append(s_encoder.Encode(value.ToString() ?? ""));
                    return;
            }
        }

        public string ToStringAndClear()
        {
            var text = _builder!.ToString();
            _builder = null;
            return text;
        }
    }
}
