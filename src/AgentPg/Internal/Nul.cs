using System.Text.Json.Nodes;

namespace AgentPg.Internal;

/// <summary>AgentPg's one rule for U+0000, which PostgreSQL cannot store (<c>text</c> rejects it with 22021, <c>jsonb</c>
/// rejects the <c>\u0000</c> escape with 22P05).</summary>
/// <remarks>
/// Text a caller passes in (prompts) is rejected with an <see cref="ArgumentException"/> that names the position: the
/// caller can fix it, and nothing is stored half-way. Text AgentPg receives and must keep (Claude's answers, tool inputs,
/// streamed or from a batch, and tool outputs and error messages) is stored with each U+0000 replaced by U+FFFD
/// (REPLACEMENT CHARACTER): that text cannot be sent back for a fix, and failing the run or the tool for one invisible
/// character would lose everything else it holds.
/// </remarks>
internal static class Nul
{
    public const char Replacement = '\uFFFD';

    /// <summary>The text with every U+0000 replaced by U+FFFD (the same instance when there is none).</summary>
    public static string? Replace(string? text) => text is not null && text.Contains('\0', StringComparison.Ordinal) ? text.Replace('\0', Replacement) : text;

    /// <summary>Throws when <paramref name="text"/> contains U+0000, naming the parameter and the position.</summary>
    public static void Reject(string? text, string paramName)
    {
        var index = text?.IndexOf('\0', StringComparison.Ordinal) ?? -1;
        if (index >= 0)
        {
            throw new ArgumentException(
                $"The text contains the character U+0000 (NUL) at index {index}, which PostgreSQL cannot store. Remove it (or replace it, " +
                "for example with U+FFFD) before passing the text.", paramName);
        }
    }

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
