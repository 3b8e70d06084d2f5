using System.Text.Json.Nodes;

namespace AgentPg.Claude;

/// <summary>
/// Places Claude prompt-cache breakpoints (<c>cache_control</c>) on a request so that each request of a conversation reads
/// the prefix the previous one wrote.
/// </summary>
/// <remarks>
/// <para>The cached prefix is everything in the order tools → system → messages up to a breakpoint. Three breakpoints at
/// most (the API accepts four), all with the same TTL (the API rejects a 1 h breakpoint after a 5 min one):</para>
/// <list type="number">
/// <item>the stable prefix: the system prompt, or the last tool when there is no system prompt;</item>
/// <item>the end of the previous request: the last block of the nearest user turn before the last turn. A tool loop
/// sends <c>[…, user(tool results), assistant(tool calls), user(tool results)]</c> and the previous iteration ended at
/// the first of those user turns; a new run in the session appends <c>assistant(answer), user(prompt)</c> the same way;</item>
/// <item>the end of the conversation (the moving breakpoint), which the next request reads through breakpoint 2.</item>
/// </list>
/// <para>Only block types the API accepts a breakpoint on are marked (text, image, document, tool_use, tool_result,
/// search_result; never thinking). A prefix shorter than the model's minimum is not an error: the API caches nothing.</para>
/// </remarks>
internal static class PromptCacheBreakpoints
{
    private static readonly HashSet<string> s_cacheable = new(StringComparer.Ordinal)
    {
        "text", "image", "document", "tool_use", "tool_result", "search_result",
    };

    public static (JsonNode? System, JsonArray Tools) Apply(JsonNode? system, JsonArray tools, JsonArray messages, string ttl)
    {
        if (system is JsonValue text)
        {
            system = new JsonArray(new JsonObject { ["type"] = "text", ["text"] = text.DeepClone(), ["cache_control"] = Control(ttl) });
        }
        else if (system is null && tools.Count > 0 && LastLoaded(tools) is { } last)
        {
            // The caller's tool list is shared by every request of the iteration: mark a copy. A deferred tool (defer_loading,
            // tool search) is not part of the prompt's prefix and takes no breakpoint: the last tool that is takes it.
            tools = (JsonArray)tools.DeepClone();
            tools[last]!["cache_control"] = Control(ttl);
        }

        if (messages.Count > 0)
        {
            Mark(messages[^1]!.AsObject(), ttl);
            for (var i = messages.Count - 2; i >= 0; i--)
            {
                var message = messages[i]!.AsObject();
                if ((string?)message["role"] == "user" && Mark(message, ttl))
                {
                    break;
                }
            }
        }

        return (system, tools);
    }

    private static int? LastLoaded(JsonArray tools)
    {
        for (var i = tools.Count - 1; i >= 0; i--)
        {
            var deferred = tools[i] is JsonObject tool && tool["defer_loading"] is JsonValue flag && flag.GetValueKind() == System.Text.Json.JsonValueKind.True;
            if (!deferred)
            {
                return i;
            }
        }

        return null;
    }

    private static bool Mark(JsonObject message, string ttl)
    {
        if (message["content"] is not JsonArray content)
        {
            return false;
        }

        for (var i = content.Count - 1; i >= 0; i--)
        {
            if (content[i] is JsonObject block && s_cacheable.Contains((string?)block["type"] ?? ""))
            {
                block["cache_control"] = Control(ttl);
                return true;
            }
        }

        return false;
    }

    private static JsonObject Control(string ttl)
        => ttl == "1h" ? new JsonObject { ["type"] = "ephemeral", ["ttl"] = "1h" } : new JsonObject { ["type"] = "ephemeral" };
}
