namespace AgentPg;

/// <summary>Which of the image types Claude accepts some bytes really are, by their first bytes. Claude refuses an image whose
/// bytes do not match its declared media type.</summary>
/// <remarks>One file compiled into two assemblies: AgentPg sends the sniffed type instead of the declared one, and
/// AgentPg.Testing (which does not reference AgentPg) refuses a mismatch as Claude does, so both read the signatures alike.</remarks>
internal static class ImageSignature
{
    /// <summary>The media type the bytes actually have (<c>image/png</c>, <c>image/jpeg</c>, <c>image/gif</c> or
    /// <c>image/webp</c>), or <see langword="null"/> when they are none of these.</summary>
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
