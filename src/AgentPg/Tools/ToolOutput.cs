using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using AgentPg.Internal;
using Microsoft.Extensions.AI;

namespace AgentPg;

/// <summary>What a tool execution records: the text (tool_output), the Claude content blocks when the result has an image
/// or a document (tool_output_content, else <see langword="null"/>), and the error flag.</summary>
internal sealed record ToolOutput(string Text, string? BlocksJson, bool IsError)
{
    private static readonly UTF8Encoding s_strictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The most bytes of images and documents one result sends to Claude (the raw bytes; base64 adds a third, and
    /// a request may not exceed 32 MB): what comes after is described in a text line instead.</summary>
    internal const int MaxResultDataBytes = ToolResult.MaxDocumentBytes;

    /// <summary>A text result, cut after <paramref name="maxLength"/> characters (see <see cref="Truncate"/>).</summary>
    public static ToolOutput FromText(string? text, int? maxLength = null) => new(Truncate(text ?? "", maxLength), null, false);

    /// <summary>Cuts a tool's text after <paramref name="maxLength"/> characters (never inside a surrogate pair) and appends
    /// a line that says how many were left out, so Claude knows the output is incomplete; shorter text, or no limit, is
    /// returned as it is.</summary>
    public static string Truncate(string text, int? maxLength)
    {
        if (maxLength is not { } max || text.Length <= max)
        {
            return text;
        }

        var keep = CutAt(text, max);
        return string.Concat(text.AsSpan(0, keep), Marker(text.Length - keep, max));
    }

    /// <summary>Converts a tool's result to what Claude accepts in a tool_result (see <see cref="ToolResult"/>): content it
    /// would refuse is described in a text block instead, so one bad block never makes the session's requests fail. At most
    /// <paramref name="maxLength"/> characters of text (text blocks and text documents together) and
    /// <see cref="MaxResultDataBytes"/> of images and documents are sent; what is cut is said in a last text block.</summary>
    public static ToolOutput From(ToolResult? result, int? maxLength = null)
    {
        if (result is null)
        {
            return FromText("");
        }

        var blocks = new JsonArray();
        var text = new StringBuilder();
        var rich = false;
        var textLeft = maxLength ?? int.MaxValue;
        var textCut = 0L;
        var dataLeft = (long)MaxResultDataBytes;
        foreach (var content in result.Content ?? [])
        {
            switch (content)
            {
                case null:
                    continue;
                case TextContent { Text: var value }:
                    AddText(value, counted: true);
                    continue;
                case DataContent data:
                    if (ToBlock(data, ref dataLeft, ref textLeft, ref textCut, out var summary) is { } block)
                    {
                        blocks.Add(block);
                        Append(summary);
                        rich = true;
                    }
                    else
                    {
                        AddText(summary, counted: false);
                    }

                    continue;
                case UriContent uri:
                    AddText($"[link: {uri.Uri}{Mime(uri.MediaType)}; not shown: Claude gets tool results inline, not by URL]", counted: false);
                    continue;
                case ErrorContent error:
                    AddText(error.Message, counted: true);
                    continue;
                default:
                    AddText($"[{content.GetType().Name}; not shown: not a content type Claude accepts in a tool result]", counted: false);
                    continue;
            }
        }

        if (textCut > 0)
        {
            AddText(Marker(textCut, maxLength!.Value).TrimStart('\n'), counted: false);
        }

        return new ToolOutput(text.ToString(), rich ? blocks.ToJsonString() : null, result.IsError);

        void AddText(string? value, bool counted)
        {
            if (string.IsNullOrEmpty(value))
            {
                return;
            }

            if (counted)
            {
                if (Take(value, ref textLeft, ref textCut) is not { } kept)
                {
                    return;
                }

                value = kept;
            }

            // U+0000 cannot be stored (Nul): replaced here, where the text enters the JSON of the blocks.
            value = Nul.Replace(value)!;
            blocks.Add(new JsonObject { ["type"] = "text", ["text"] = value });
            Append(value);
        }

        void Append(string value)
        {
            if (text.Length > 0)
            {
                text.Append('\n');
            }

            text.Append(value);
        }
    }

    /// <summary>What of <paramref name="value"/> fits the text still allowed (all of it, or its head), or
    /// <see langword="null"/> when nothing of it does; counts what is cut.</summary>
    private static string? Take(string value, ref int textLeft, ref long textCut)
    {
        if (textLeft <= 0)
        {
            textCut += value.Length;
            return null;
        }

        if (value.Length <= textLeft)
        {
            textLeft -= value.Length;
            return value;
        }

        var keep = CutAt(value, textLeft);
        textCut += value.Length - keep;
        textLeft = 0;
        return keep == 0 ? null : value[..keep];
    }

    /// <summary>Where to cut <paramref name="text"/> to keep at most <paramref name="max"/> characters: one earlier when the
    /// cut would split a surrogate pair (a lone surrogate cannot be stored or sent).</summary>
    private static int CutAt(string text, int max)
        => max > 0 && max < text.Length && char.IsHighSurrogate(text[max - 1]) ? max - 1 : Math.Clamp(max, 0, text.Length);

    private static string Marker(long cut, int max)
        => string.Create(CultureInfo.InvariantCulture, $"\n[… {cut:N0} more characters not shown: a tool's output is limited to {max:N0} characters]");

    /// <summary>An image or document block for the data, with the line that stands for it in the text; or
    /// <see langword="null"/> with the line that describes why it is not sent.</summary>
    private static JsonObject? ToBlock(DataContent data, ref long dataLeft, ref int textLeft, ref long textCut, out string summary)
    {
        var mediaType = NormalizeMediaType(data.MediaType);
        var name = string.IsNullOrEmpty(data.Name) ? "" : data.Name + ", ";
        ReadOnlyMemory<byte> bytes;
        try
        {
            bytes = data.Data;
        }
        catch (FormatException)
        {
            summary = $"[{name}{mediaType}; not shown: its base64 data is invalid]";
            return null;
        }

        var size = bytes.Length.ToString("N0", CultureInfo.InvariantCulture);
        var kind = mediaType.StartsWith("image/", StringComparison.Ordinal) ? "image" : "content";
        if (mediaType.StartsWith("image/", StringComparison.Ordinal))
        {
            if (ImageSignature.Sniff(bytes.Span) is not { } actual)
            {
                summary = IsClaudeImageType(mediaType)
                    ? $"[image: {name}{mediaType}, {size} bytes; not shown: the bytes are not a {mediaType[6..].ToUpperInvariant()} image]"
                    : $"[image: {name}{mediaType}, {size} bytes; not shown: Claude accepts JPEG, PNG, GIF and WebP images]";
                return null;
            }

            if (bytes.Length > ToolResult.MaxImageBytes)
            {
                summary = $"[image: {name}{mediaType}, {size} bytes; not shown: larger than Claude's 5 MB limit per image]";
                return null;
            }

            if (bytes.Length > dataLeft)
            {
                summary = $"[image: {name}{actual}, {size} bytes; not shown: {DataLimit}]";
                return null;
            }

            dataLeft -= bytes.Length;
            summary = $"[image: {name}{actual}, {size} bytes]";
            return new JsonObject
            {
                ["type"] = "image",
                ["source"] = new JsonObject { ["type"] = "base64", ["media_type"] = actual, ["data"] = Convert.ToBase64String(bytes.Span) },
            };
        }

        if (mediaType is "application/pdf" or "text/plain")
        {
            if (bytes.Length > ToolResult.MaxDocumentBytes)
            {
                summary = $"[document: {name}{mediaType}, {size} bytes; not shown: larger than {ToolResult.MaxDocumentBytes / (1024 * 1024)} MB]";
                return null;
            }

            JsonObject source;
            if (mediaType == "application/pdf")
            {
                if (!bytes.Span.StartsWith("%PDF-"u8))
                {
                    summary = $"[document: {name}{mediaType}, {size} bytes; not shown: the bytes are not a PDF]";
                    return null;
                }

                if (bytes.Length > dataLeft)
                {
                    summary = $"[document: {name}{mediaType}, {size} bytes; not shown: {DataLimit}]";
                    return null;
                }

                dataLeft -= bytes.Length;
                source = new JsonObject { ["type"] = "base64", ["media_type"] = mediaType, ["data"] = Convert.ToBase64String(bytes.Span) };
            }
            else
            {
                string decoded;
                try
                {
                    decoded = s_strictUtf8.GetString(bytes.Span);
                }
                catch (DecoderFallbackException)
                {
                    summary = $"[document: {name}{mediaType}, {size} bytes; not shown: not valid UTF-8 text]";
                    return null;
                }

                if (decoded.Length == 0)
                {
                    summary = "";
                    return null;
                }

                // A text document is text for Claude: it shares the result's text limit.
                if (Take(decoded, ref textLeft, ref textCut) is not { } kept)
                {
                    summary = "";
                    return null;
                }

                decoded = kept;

                source = new JsonObject { ["type"] = "text", ["media_type"] = mediaType, ["data"] = Nul.Replace(decoded) };
            }

            summary = $"[document: {name}{mediaType}, {size} bytes]";
            var document = new JsonObject { ["type"] = "document", ["source"] = source };
            if (!string.IsNullOrEmpty(data.Name))
            {
                document["title"] = Nul.Replace(data.Name);
            }

            return document;
        }

        summary = $"[{kind}: {name}{mediaType}, {size} bytes; not shown: Claude does not accept {mediaType} in a tool result]";
        return null;
    }

    private static string NormalizeMediaType(string? mediaType)
    {
        if (string.IsNullOrWhiteSpace(mediaType))
        {
            return "application/octet-stream";
        }

        var semicolon = mediaType.IndexOf(';', StringComparison.Ordinal);
        return (semicolon >= 0 ? mediaType[..semicolon] : mediaType).Trim().ToLowerInvariant();
    }

    private static bool IsClaudeImageType(string mediaType) => mediaType is "image/jpeg" or "image/png" or "image/gif" or "image/webp";

    private static string DataLimit => $"the result's images and documents are limited to {MaxResultDataBytes / (1024 * 1024)} MB together";

    private static string Mime(string? mediaType) => string.IsNullOrEmpty(mediaType) ? "" : $" ({mediaType})";
}
