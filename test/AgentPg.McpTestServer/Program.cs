using AgentPg.McpTestServer;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// Over stdio: stdout carries the protocol, so nothing else may write to it.
var eventsFile = Environment.GetEnvironmentVariable("AGENTPG_MCP_TEST_EVENTS");
if (eventsFile is not null)
{
    File.AppendAllText(eventsFile, $"process {Environment.ProcessId}\n");
}

if (args.Contains("--raw"))
{
    await RawServer.RunAsync().ConfigureAwait(false);
    return;
}

var server = new TestServer(eventsFile)
{
    ChangeToolsDuringFirstList = Environment.GetEnvironmentVariable("AGENTPG_MCP_TEST_CHANGE_TOOLS_DURING_FIRST_LIST") == "1",
    HangOnList = Environment.GetEnvironmentVariable("AGENTPG_MCP_TEST_HANG_LIST") == "1",
};
var builder = Host.CreateApplicationBuilder(args);
builder.Logging.ClearProviders();
builder.Services.AddMcpServer(server.Configure).WithStdioServerTransport();
await builder.Build().RunAsync().ConfigureAwait(false);
