using System.Buffers.Text;
using System.Globalization;
using System.Text;

namespace AgentPg.Queries;

/// <summary>The opaque keyset cursor of the list queries: the (created_at, id) of the last row of a page, which PostgreSQL
/// stores with microsecond precision, so the round trip is exact.</summary>
internal static class PageCursor
{
    private const long UnixEpochTicks = 621_355_968_000_000_000;

    public static string Encode(DateTimeOffset createdAt, Guid id)
    {
        var micros = (createdAt.UtcTicks - UnixEpochTicks) / 10;
        return Base64Url.EncodeToString(Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"{micros}.{id:N}")));
    }

    public static (DateTimeOffset CreatedAt, Guid Id)? Decode(string? cursor, string parameterName)
    {
        if (cursor is null)
        {
            return null;
        }

        try
        {
            var text = Encoding.ASCII.GetString(Base64Url.DecodeFromChars(cursor));
            var dot = text.IndexOf('.', StringComparison.Ordinal);
            if (dot > 0
                && long.TryParse(text.AsSpan(0, dot), NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var micros)
                && Guid.TryParseExact(text.AsSpan(dot + 1), "N", out var id)
                && micros is > -62_135_596_800_000_000 and < 253_402_300_800_000_000)
            {
                return (new DateTimeOffset(UnixEpochTicks + (micros * 10), TimeSpan.Zero), id);
            }
        }
        catch (FormatException)
        {
        }

        throw new ArgumentException(
            "The cursor is not one a list query returned: pass the NextCursor of the previous page unchanged, or null for the first page.",
            parameterName);
    }
}
