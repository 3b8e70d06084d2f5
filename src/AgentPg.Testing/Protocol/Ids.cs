using System.Security.Cryptography;

namespace AgentPg.Testing;

/// <summary>Identifiers shaped like the real API's: a prefix, <c>01</c>, then 22 random base-62 characters.</summary>
internal static class Ids
{
    private const string Alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    public static string Message() => New("msg_");

    public static string ToolUse() => New("toolu_");

    public static string Batch() => New("msgbatch_");

    public static string Request() => New("req_");

    private static string New(string prefix) => prefix + "01" + RandomNumberGenerator.GetString(Alphabet, 22);
}
