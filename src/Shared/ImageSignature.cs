// Compiled into AgentPg (ToolOutput checks a tool's image before sending it) and into AgentPg.Testing (the fake Claude
// refuses an image whose bytes do not match its declared type, as Claude does), which does not reference AgentPg. The
// signatures are a fact of the file formats, not a policy of either side, so one copy serves both.
namespace AgentPg.Internal;

internal static class ImageSignature
{
    /// <summary>The media type the bytes actually have, among the image types Claude accepts (JPEG, PNG, GIF, WebP), or
    /// null for any other bytes.</summary>
    public static string? Sniff(ReadOnlySpan<byte> bytes)
    {
        if (bytes.StartsWith((ReadOnlySpan<byte>)[0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]))
        {
            return "image/png";
        }

        if (bytes.StartsWith((ReadOnlySpan<byte>)[0xFF, 0xD8, 0xFF]))
        {
            return "image/jpeg";
        }

        if (bytes.StartsWith("GIF87a"u8) || bytes.StartsWith("GIF89a"u8))
        {
            return "image/gif";
        }

        return bytes.Length >= 12 && bytes.StartsWith("RIFF"u8) && bytes[8..12].SequenceEqual("WEBP"u8) ? "image/webp" : null;
    }
}
