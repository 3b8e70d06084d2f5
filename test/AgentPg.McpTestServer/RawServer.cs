using System.Text.Json;
using System.Text.Json.Nodes;

namespace AgentPg.McpTestServer;

/// <summary>A stdio MCP server written without the SDK (whose types refuse them), offering tools whose definitions bend the
/// specification as some servers in the wild do: an input schema without <c>"type"</c>, one that is not an object schema.</summary>
public static class RawServer
{
    /// <summary>The tools/list answer.</summary>
    public const string Tools = """
        [
          { "name": "untyped", "description": "Its input schema has no type", "inputSchema": { "properties": { "q": { "type": "string" } }, "required": ["q"] } },
          { "name": "stringy", "description": "Its input schema is a string schema", "inputSchema": { "type": "string" } },
          { "name": "plain", "description": "A valid tool", "inputSchema": { "type": "object", "properties": {} } }
        ]
        """;

    /// <summary>Answers requests on stdin until it closes.</summary>
    /// <returns>A task that completes when stdin closes.</returns>
    public static async Task RunAsync()
    {
        using var input = new StreamReader(Console.OpenStandardInput());
        await using var output = new StreamWriter(Console.OpenStandardOutput()) { AutoFlush = true };
        while (await input.ReadLineAsync().ConfigureAwait(false) is { } line)
        {
            var request = JsonNode.Parse(line)!.AsObject();
            if (request["id"] is not { } id)
            {
                continue; // a notification
            }

            var method = (string?)request["method"];
            JsonNode? result = method switch
            {
                "initialize" => new JsonObject
                {
                    ["protocolVersion"] = request["params"]?["protocolVersion"]?.DeepClone(),
                    ["capabilities"] = new JsonObject { ["tools"] = new JsonObject() },
                    ["serverInfo"] = new JsonObject { ["name"] = "raw", ["version"] = "1.0.0" },
                },
                "ping" => new JsonObject(),
                "tools/list" => new JsonObject { ["tools"] = JsonNode.Parse(Tools) },
                "tools/call" => new JsonObject
                {
                    ["content"] = new JsonArray(new JsonObject
                    {
                        ["type"] = "text",
                        ["text"] = $"{request["params"]?["name"]} called with {request["params"]?["arguments"]?.ToJsonString()}",
                    }),
                },
                _ => null,
            };
            var response = new JsonObject { ["jsonrpc"] = "2.0", ["id"] = id.DeepClone() };
            if (result is null)
            {
                response["error"] = new JsonObject { ["code"] = -32601, ["message"] = "Method not found" };
            }
            else
            {
                response["result"] = result;
            }

            await output.WriteLineAsync(response.ToJsonString(new JsonSerializerOptions { WriteIndented = false })).ConfigureAwait(false);
        }
    }
}
