using System.Text.Json;

namespace AgentPg.Tests.Infrastructure;

/// <summary>Reads fields of recorded Messages request bodies.</summary>
public static class RequestBodies
{
    /// <summary>The system prompt's text: a string, or (with prompt caching) the text blocks of an array joined.</summary>
    public static string? SystemText(JsonElement body)
    {
        if (!body.TryGetProperty("system", out var system))
        {
            return null;
        }

        return system.ValueKind == JsonValueKind.String
            ? system.GetString()
            : string.Concat(system.EnumerateArray().Select(b => b.GetProperty("text").GetString()));
    }
}
