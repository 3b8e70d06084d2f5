using System.Buffers;
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

    // Bidirectional embeddings, overrides and isolates reorder the text after them, so model output holding one could show a
    // person something else than what is stored and runs (an approver reading a tool input: "Trojan Source"). The encoder
    // passes them as they are, and an entity would still be one: pages show each as a visible "[U+202E]".
    private static readonly SearchValues<char> s_bidiControls =
        SearchValues.Create("\u202A\u202B\u202C\u202D\u202E\u2066\u2067\u2068\u2069");

    private readonly string? _value;

    private Html(string value) => _value = value;

    public static Html Empty => default;

    public string Value => _value ?? "";

    /// <summary>Markup written by this assembly, never data.</summary>
    public static Html Trusted(string markup) => new(markup);

    public static Html Of(ref Handler handler) => new(handler.ToStringAndClear());

    public static Html Text(string? text) => new(text is null ? "" : Encode(text));

    /// <summary>The text with each bidirectional embedding, override or isolate control shown as <c>[U+202E]</c> (or, in JSON
    /// text, as its escape <c>\u202E</c>); the same instance when it has none.</summary>
    public static string ShowBidiControls(string text, bool asJsonEscape = false)
    {
        if (text.AsSpan().IndexOfAny(s_bidiControls) < 0)
        {
            return text;
        }

        var shown = new StringBuilder(text.Length + 16);
        foreach (var c in text)
        {
            if (s_bidiControls.Contains(c))
            {
                shown.Append(asJsonEscape ? "\\u" : "[U+").Append(((int)c).ToString("X4", CultureInfo.InvariantCulture)).Append(asJsonEscape ? "" : "]");
            }
            else
            {
                shown.Append(c);
            }
        }

        return shown.ToString();
    }

    private static string Encode(string text) => ShowBidiControls(s_encoder.Encode(text));

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
                    _builder!.Append(Encode(formattable.ToString(format, CultureInfo.InvariantCulture)));
                    return;
                default:
                    _builder!.Append(Encode(value.ToString() ?? ""));
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
