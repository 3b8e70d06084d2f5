using System.ComponentModel;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using ModelContextProtocol.Server;

namespace McpTools;

/// <summary>A small MCP server over stdio with the two tools the sample uses, for machines without node.</summary>
[McpServerToolType]
public static class SampleServer
{
    /// <summary>Runs the server on stdin/stdout until the client closes the connection.</summary>
    public static async Task RunAsync()
    {
        var builder = Host.CreateApplicationBuilder();
        // stdout carries the protocol: nothing else may write to it.
        builder.Logging.ClearProviders();
        builder.Services.AddMcpServer(o => o.ServerInfo = new() { Name = "agentpg-sample-server", Version = "1.0.0" })
            .WithStdioServerTransport()
            .WithToolsFromAssembly(typeof(SampleServer).Assembly);
        await builder.Build().RunAsync();
    }

    [McpServerTool(Name = "echo"), Description("Echoes back the input")]
    public static string Echo([Description("Message to echo")] string message) => $"Echo: {message}";

    [McpServerTool(Name = "get-sum"), Description("Returns the sum of two numbers")]
    public static string GetSum([Description("First number")] double a, [Description("Second number")] double b) => $"The sum of {a} and {b} is {a + b}.";
}
