using AgentPg.McpTestServer;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

// Over stdio: stdout carries the protocol, so nothing else may write to it.
var server = new TestServer(Environment.GetEnvironmentVariable("AGENTPG_MCP_TEST_EVENTS"));
var builder = Host.CreateApplicationBuilder(args);
builder.Logging.ClearProviders();
builder.Services.AddMcpServer(server.Configure).WithStdioServerTransport();
await builder.Build().RunAsync().ConfigureAwait(false);
