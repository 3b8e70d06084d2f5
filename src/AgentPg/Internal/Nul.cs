using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.Internal;

/// <summary>AgentPg's one rule for U+0000, which PostgreSQL cannot store (<c>text</c> rejects it with 22021, <c>jsonb</c>
/// rejects the <c>\u0000</c> escape with 22P05), and for unpaired UTF-16 surrogates, which are not Unicode and cannot be
/// encoded as UTF-8 (Npgsql refuses them with an <see cref="EncoderFallbackException"/>, <c>jsonb</c> rejects their escapes).</summary>
/// <remarks>
/// Text a caller passes in (prompts, instructions, agent definitions, metadata, variables, approval decisions, filters) is
/// rejected with an <see cref="ArgumentException"/> that names the field and the position: the caller can fix it, and nothing
/// is stored half-way. Text AgentPg receives and must keep (Claude's answers, tool inputs, streamed or from a batch, and tool
/// outputs and error messages) is stored with each U+0000 replaced by U+FFFD (REPLACEMENT CHARACTER), and so is each unpaired
/// surrogate Claude's JSON escapes (a tool input is JSON the model writes; see <see cref="ReplaceUnpairedSurrogates"/>): that text cannot be
/// sent back for a fix, and failing the run or the tool for one invisible character would lose everything else it holds.
/// </remarks>
internal static class Nul
{
    public const char Replacement = '\uFFFD';

    /// <summary>The text with every U+0000 replaced by U+FFFD (the same instance when there is none).</summary>
    public static string? Replace(string? text) => text is not null && text.Contains('\0', StringComparison.Ordinal) ? text.Replace('\0', Replacement) : text;

    /// <summary>Throws when <paramref name="text"/> contains U+0000 or an unpaired surrogate, naming the parameter, the field
    /// (<paramref name="field"/>, for example <c>AgentDefinition.SystemPrompt</c>; "The text" when null) and the position.</summary>
    public static void Reject(string? text, string paramName, string? field = null)
    {
        if (text is null)
        {
            return;
        }

        var what = field ?? "The text";
        var index = text.IndexOf('\0', StringComparison.Ordinal);
        if (index >= 0)
        {
            throw new ArgumentException(
                $"{what} contains the character U+0000 (NUL) at index {index}, which PostgreSQL cannot store. Remove it (or replace it, " +
                "for example with U+FFFD) before passing the text.", paramName);
        }

        var lone = IndexOfUnpairedSurrogate(text);
        if (lone >= 0)
        {
            throw new ArgumentException(
                $"{what} contains an unpaired UTF-16 surrogate (\\u{(int)text[lone]:X4}) at index {lone}, which is not a Unicode character and " +
                "cannot be stored as UTF-8; the text was probably cut in the middle of a character or decoded wrongly. Remove it (or replace it, " +
                "for example with U+FFFD) before passing the text.", paramName);
        }
    }

    /// <summary>Throws when a string or property name of the JSON text <paramref name="json"/> contains U+0000 or an unpaired
    /// surrogate (escaped or not), naming the parameter, the field and the JSON path.</summary>
    public static void RejectInJson(string json, string paramName, string field)
    {
        if (!json.Contains("\\u", StringComparison.Ordinal) && IndexOfUnpairedSurrogate(json) < 0)
        {
            // Without an escape, U+0000 cannot be in valid JSON text, and no string holds an unpaired surrogate.
            return;
        }

        var reader = new Utf8JsonReader(Encoding.UTF8.GetBytes(json));
        var path = new List<string>();
        var pendingName = (string?)null;
        while (reader.Read())
        {
            switch (reader.TokenType)
            {
                case JsonTokenType.PropertyName:
                    pendingName = CheckedString(ref reader, paramName, field, path, null);
                    break;
                case JsonTokenType.String:
                    CheckedString(ref reader, paramName, field, path, pendingName);
                    pendingName = null;
                    break;
                case JsonTokenType.StartObject or JsonTokenType.StartArray:
                    path.Add(pendingName ?? "");
                    pendingName = null;
                    break;
                case JsonTokenType.EndObject or JsonTokenType.EndArray:
                    path.RemoveAt(path.Count - 1);
                    break;
                default:
                    pendingName = null;
                    break;
            }
        }
    }

    private static string CheckedString(ref Utf8JsonReader reader, string paramName, string field, List<string> path, string? name)
    {
        var where = string.Join(".", path.Append(name ?? "").Where(p => p.Length > 0));
        var what = reader.TokenType == JsonTokenType.PropertyName
            ? $"{field} has a property name{(where.Length == 0 ? "" : $" at '{where}'")} that"
            : $"{field}{(where.Length == 0 ? "" : $" at '{where}'")}";
        string value;
        try
        {
            value = reader.GetString()!;
        }
        catch (InvalidOperationException)
        {
            // System.Text.Json refuses to unescape an unpaired surrogate.
            throw new ArgumentException(
                $"{what} contains an escaped unpaired UTF-16 surrogate, which is not a Unicode character and cannot be stored. Remove it (or " +
                "replace it, for example with U+FFFD).", paramName);
        }

        Reject(value, paramName, what);
        return value;
    }

    /// <summary>The index of the first high surrogate not followed by a low one, or low surrogate not preceded by a high one; -1
    /// when the text is well-formed UTF-16.</summary>
    public static int IndexOfUnpairedSurrogate(string text)
    {
        // Most text has no surrogate at all (every prompt passes here): a vectorized search finds the first one, if any.
        var first = text.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF');
        if (first < 0)
        {
            return -1;
        }

        for (var i = first; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsHighSurrogate(c) && i + 1 < text.Length && char.IsLowSurrogate(text[i + 1]))
            {
                i++;
            }
            else if (char.IsSurrogate(c))
            {
                return i;
            }
        }

        return -1;
    }

    /// <summary>The JSON text with every unpaired UTF-16 surrogate replaced by U+FFFD: an escaped one (<c>\uD800</c> not followed by
    /// a low surrogate's escape, or a low one's escape alone), which System.Text.Json refuses to read, and a raw one; the same
    /// instance when there is none. For JSON AgentPg receives and must keep: a tool input is JSON text the model writes, and
    /// one such escape in it made the whole run fail when the input was read.</summary>
    public static string ReplaceUnpairedSurrogates(string json)
    {
        if (json.AsSpan().IndexOfAnyInRange('\uD800', '\uDFFF') < 0 && !HasSurrogateEscape(json))
        {
            return json;
        }

        var result = new StringBuilder(json.Length);
        for (var i = 0; i < json.Length; i++)
        {
            var c = json[i];
            if (c == '\\' && i + 1 < json.Length)
            {
                if (SurrogateEscape(json, i) is { } unit)
                {
                    if (char.IsHighSurrogate(unit) && SurrogateEscape(json, i + 6) is { } next && char.IsLowSurrogate(next))
                    {
                        result.Append(json, i, 12);
                        i += 11;
                    }
                    else
                    {
                        result.Append("\\uFFFD");
                        i += 5;
                    }

                    continue;
                }

                // Any other escape, \\ included: its two characters as they are.
                result.Append(c).Append(json[i + 1]);
                i++;
                continue;
            }

            if (char.IsHighSurrogate(c) && i + 1 < json.Length && char.IsLowSurrogate(json[i + 1]))
            {
                result.Append(c).Append(json[i + 1]);
                i++;
                continue;
            }

            result.Append(char.IsSurrogate(c) ? Replacement : c);
        }

        return result.ToString();
    }

    // Whether the text may hold the escape of a surrogate (a false positive, such as an escaped backslash before "ud800", only
    // costs the careful pass).
    private static bool HasSurrogateEscape(string json)
    {
        for (var i = json.IndexOf("\\u", StringComparison.Ordinal); i >= 0; i = json.IndexOf("\\u", i + 2, StringComparison.Ordinal))
        {
            if (SurrogateEscape(json, i) is not null)
            {
                return true;
            }
        }

        return false;
    }

    // The UTF-16 unit of the \uXXXX escape at the index when it is a surrogate; null otherwise.
    private static char? SurrogateEscape(string json, int index)
        => index + 6 <= json.Length && json[index] == '\\' && json[index + 1] == 'u'
           && ushort.TryParse(json.AsSpan(index + 2, 4), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var unit)
           && char.IsSurrogate((char)unit)
            ? (char)unit
            : null;

    /// <summary>Replaces U+0000 in every string and property name of a JSON tree, in place; returns whether anything changed.</summary>
    public static bool ReplaceIn(JsonNode? node)
    {
        switch (node)
        {
            case JsonObject obj:
                var changed = false;
                foreach (var (name, value) in obj.ToList())
                {
                    var newName = Replace(name)!;
                    if (!ReferenceEquals(newName, name))
                    {
                        obj.Remove(name);
                        obj[newName] = value;
                        changed = true;
                    }

                    if (value is JsonValue v && v.TryGetValue(out string? s) && s.Contains('\0', StringComparison.Ordinal))
                    {
                        obj[newName] = JsonValue.Create(Replace(s));
                        changed = true;
                    }
                    else
                    {
                        changed |= ReplaceIn(value);
                    }
                }

                return changed;

            case JsonArray array:
                var any = false;
                for (var i = 0; i < array.Count; i++)
                {
                    if (array[i] is JsonValue v && v.TryGetValue(out string? s) && s.Contains('\0', StringComparison.Ordinal))
                    {
                        array[i] = JsonValue.Create(Replace(s));
                        any = true;
                    }
                    else
                    {
                        any |= ReplaceIn(array[i]);
                    }
                }

                return any;

            default:
                return false;
        }
    }
}
